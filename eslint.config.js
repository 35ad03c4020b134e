// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', '.scratch/', 'bench/.tmp/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', URL: 'readonly', URLSearchParams: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  {
    // The core knows nothing of express: it stays testable as plain functions (STYLE.md).
    files: ['src/auth/**', 'src/session/**', 'src/coze/**', 'src/policy/**', 'src/metrics/**', 'src/proxy/**', 'src/http/**'],
    rules: { 'no-restricted-imports': ['error', { paths: [{ name: 'express', message: 'express lives at the edges (server, admin, vending).' }] }] },
  },
  {
    // One request path (issue 17, item 2): its steps chain through src/maybe.ts, so a cached
    // request creates no promise. An async function or an await here would make one per call.
    files: ['src/proxy/proxy-handler.ts', 'src/proxy/admit.ts', 'src/maybe.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: ':function[async=true]', message: 'The request path is chained with Steps (src/maybe.ts): return a Maybe, not a promise.' },
        { selector: 'AwaitExpression', message: 'The request path is chained with Steps (src/maybe.ts): no await.' },
      ],
    },
  },
);
