// ESLint (flat config): `npm run lint` (part of `npm test`, which wants 0 problems) checks src/ and
// test/ with typescript-eslint's strict and stylistic type-checked rules, plus the core-rule
// conventions oclif's own projects use (eslint-config-oclif: eslint:recommended, xo's
// eqeqeq/no-var/prefer-const/object-shorthand, no curly or capitalised-comment rules) and cistern's own: commands never exit or write stderr
// themselves (src/core/command.ts decides exit codes), and src/ never prints with console.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const NODE_GLOBALS = ['process', 'console', 'Buffer', 'URL', 'AbortController', 'AbortSignal', 'performance', 'fetch', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'structuredClone']

export default tseslint.config(
  {ignores: ['dist/', 'node_modules/', 'bench/', 'examples/', '.tmp/', 'coverage/', '*.config.{js,ts}']},
  js.configs.recommended,
  tseslint.configs.strictTypeChecked,
  tseslint.configs.stylisticTypeChecked,
  {
    languageOptions: {
      parserOptions: {projectService: true, tsconfigRootDir: import.meta.dirname},
    },
    linterOptions: {reportUnusedDisableDirectives: 'error'},
    rules: {
      eqeqeq: ['error', 'smart'],
      'no-var': 'error',
      'prefer-const': 'error',
      'object-shorthand': 'error',
      'no-useless-rename': 'error',
      'no-else-return': ['error', {allowElseIf: false}],
      // Template literals with numbers are the house style for messages ("3 delivered").
      '@typescript-eslint/restrict-template-expressions': ['error', {allowNumber: true, allowBoolean: true}],
      // `_name` marks a parameter a signature needs but the body does not.
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none'}],
      // Interfaces for shapes, type aliases for unions: both appear, each where it reads best.
      '@typescript-eslint/consistent-type-definitions': 'off',
      // `(res) => res.end('ok')` and `() => void work()` are the house style for callbacks.
      '@typescript-eslint/no-confusing-void-expression': ['error', {ignoreArrowShorthand: true, ignoreVoidOperator: true}],
      // string[] for simple element types, Array<{…}> / Array<A | B> where brackets would be hard to read.
      '@typescript-eslint/array-type': ['error', {default: 'array-simple'}],
      // `async` is how an async interface is implemented (oclif flag parsers, queue backends,
      // stand-ins) even without an await; forgotten awaits are no-floating-promises' job.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // Plain JavaScript (test fixtures run as child processes) is outside the TypeScript project.
    files: ['**/*.{js,mjs,cjs}'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {...tseslint.configs.disableTypeChecked.languageOptions, globals: Object.fromEntries(NODE_GLOBALS.map((name) => [name, 'readonly']))},
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      // Output goes through the logger (stderr) or the command's this.log/--json (stdout).
      'no-console': 'error',
    },
  },
  {
    files: ['src/commands/**/*.ts'],
    rules: {
      // Errors and exit codes are decided in the base command only (src/core/command.ts): a command
      // returns its result (with a RunOutcome when it ends badly) or throws a CisternError.
      'no-restricted-syntax': [
        'error',
        {selector: "MemberExpression[object.name='process'][property.name='exitCode']", message: 'Return a RunOutcome ({exitCode, problems}); the base command exits.'},
        {selector: "MemberExpression[object.name='process'][property.name='exit']", message: 'Return a RunOutcome or throw a CisternError; the base command exits.'},
        {selector: "CallExpression[callee.object.type='ThisExpression'][callee.property.name='exit']", message: 'Return a RunOutcome or throw a CisternError; the base command exits.'},
        {selector: "MemberExpression[object.object.name='process'][object.property.name='stderr']", message: 'Problems go in the RunOutcome; the base command writes them (masked).'},
      ],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // Tests read JSON the CLI printed and poke at it: `any` from JSON.parse is the point there.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      // `found!` on data the test itself put there; a wrong guess fails the test anyway.
      '@typescript-eslint/no-non-null-assertion': 'off',
      // Stand-ins implement async interfaces with bodies that need no await.
      '@typescript-eslint/require-await': 'off',
      // expect(spy.method) and vi.spyOn pass methods around unbound by design.
      '@typescript-eslint/unbound-method': 'off',
    },
  },
)
