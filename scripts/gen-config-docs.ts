import { writeFileSync } from 'node:fs';
import { renderConfigurationMd, renderDefaultYaml } from '../src/config/docs.js';

// Regenerates the two files that mirror the config schema; a contract test checks them.
writeFileSync(new URL('../docs/configuration.md', import.meta.url), renderConfigurationMd());
writeFileSync(new URL('../config/default.yaml', import.meta.url), renderDefaultYaml());
console.log('wrote docs/configuration.md and config/default.yaml');
