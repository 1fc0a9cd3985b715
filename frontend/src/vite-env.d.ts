/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The key of the optional client signature (see signing.ts); empty in most builds. */
  readonly VITE_CLIENT_SIGNING_SECRET?: string;
}
