import { writeFileSync } from 'node:fs';
import { renderRoutesMd } from '../src/policy/routes-doc.js';

writeFileSync(new URL('../docs/routes.md', import.meta.url), renderRoutesMd());
console.log('wrote docs/routes.md');
