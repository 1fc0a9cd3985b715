import { describe, expect, it } from 'vitest';
import { sessionGone } from './client';

const error = (code: string, reason?: string) => ({ extensions: { code, reason } });

describe('sessionGone (when the page should go back to sign-in)', () => {
  it('is a refused or missing session', () => {
    expect(sessionGone([error('UNAUTHENTICATED', 'session_revoked')])).toBe(true);
    expect(sessionGone([error('UNAUTHENTICATED')])).toBe(true);
    expect(sessionGone([error('NOT_FOUND'), error('UNAUTHENTICATED', 'token_invalid')])).toBe(true);
  });

  it('is not a wrong password, an expired token (refreshed instead), or any other refusal', () => {
    expect(sessionGone([error('UNAUTHENTICATED', 'invalid_credentials')])).toBe(false);
    expect(sessionGone([error('UNAUTHENTICATED', 'token_expired')])).toBe(false);
    expect(sessionGone([error('FORBIDDEN'), error('RATE_LIMITED')])).toBe(false);
    expect(sessionGone(undefined)).toBe(false);
    expect(sessionGone([])).toBe(false);
  });
});
