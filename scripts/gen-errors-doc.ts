import { writeFileSync } from 'node:fs';
import { renderErrorsMd } from '../src/errors-doc.js';

writeFileSync(new URL('../docs/errors.md', import.meta.url), renderErrorsMd());
console.log('wrote docs/errors.md');
