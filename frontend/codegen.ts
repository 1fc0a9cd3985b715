import type { CodegenConfig } from '@graphql-codegen/cli';

// Types for every operation in src/, from the server's exported schema. `npm run
// codegen:check` fails when src/gql/ is stale.
const config: CodegenConfig = {
  schema: '../schema.graphql',
  documents: ['src/**/*.tsx', 'src/**/*.ts', '!src/gql/**/*'],
  ignoreNoDocuments: true,
  generates: {
    './src/gql/': {
      preset: 'client',
      config: { useTypeImports: true, enumsAsTypes: true, scalars: { DateTime: 'string', UUID: 'string' } },
      presetConfig: { fragmentMasking: false },
    },
  },
};

export default config;
