import { writeFileSync } from 'node:fs';
import { renderMetricsMd } from '../src/metrics/metrics-doc.js';

writeFileSync(new URL('../docs/metrics.md', import.meta.url), await renderMetricsMd());
console.log('wrote docs/metrics.md');
