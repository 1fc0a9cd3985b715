import type { CombinedError } from 'urql';

/** What a refusal says to a person, from `extensions.code` and `extensions.reason`. */
export interface Problem {
  message: string;
  code: string;
  reason?: string;
  /** Seconds until trying again makes sense (RATE_LIMITED, UNAVAILABLE). */
  retryAfter?: number;
}

const REASONS: Record<string, string> = {
  invalid_credentials: 'That email and password do not match.',
  email_taken: 'An account with this email exists already.',
  username_taken: 'This username is taken.',
  weak_password: 'Choose a longer, less guessable password.',
  invalid_token: 'This link or code is invalid or has expired.',
  access_denied: 'The sign-in was cancelled at the provider.',
  provider_error: 'The provider could not sign you in. Try again.',
  code_missing: 'The provider could not sign you in. Try again.',
  code_rejected: 'The provider could not sign you in. Try again.',
  id_token_invalid: 'The provider could not sign you in. Try again.',
  id_token_missing: 'The provider could not sign you in. Try again.',
  provider_unavailable: 'The provider cannot be reached right now. Try again shortly.',
  provider_not_configured: 'This sign-in method is not available.',
  identity_in_use: 'That provider account is already linked to another account here.',
  provider_disabled: 'This ad provider is not available.',
  placement_not_allowed: 'This placement is not available.',
  ticket_invalid: 'This ad could not be verified. Start a new one.',
  ticket_expired: 'This ad expired. Start a new one.',
  duration_too_short: 'The ad must stay visible a little longer.',
  turnstile_failed: 'The challenge was not passed. Try again.',
  network_blocked: 'Ads cannot be watched from this network.',
  bad_client_signature: 'This request could not be verified.',
  device_mismatch: 'The ad was started on another device.',
  cooldown: 'Wait a moment before the next ad.',
  daily_cap_user: "You've reached today's ad limit.",
  daily_cap_device: "This device has reached today's ad limit.",
  daily_cap_ip: "This network has reached today's ad limit.",
};

const CODES: Record<string, string> = {
  UNAUTHENTICATED: 'Please sign in.',
  FORBIDDEN: 'You are not allowed to do this.',
  BAD_USER_INPUT: 'Please check what you entered.',
  NOT_FOUND: 'Not found.',
  CONFLICT: 'That conflicts with the current state.',
  INSUFFICIENT_FUNDS: 'You do not have enough coins.',
  RATE_LIMITED: 'Too many attempts; wait a moment.',
  NOT_CONFIGURED: 'This is not available on this server.',
  UNAVAILABLE: 'A service is unavailable; try again shortly.',
  INTERNAL: 'Something went wrong on our side.',
};

export function describe(error: CombinedError | undefined): Problem | undefined {
  if (!error) return undefined;
  if (error.networkError) {
    return { message: 'The server cannot be reached. Check your connection.', code: 'NETWORK' };
  }
  const first = error.graphQLErrors[0];
  const ext = (first?.extensions ?? {}) as { code?: string; reason?: string; retryAfter?: number };
  const code = ext.code ?? 'INTERNAL';
  const message = (ext.reason && REASONS[ext.reason]) ?? CODES[code] ?? first?.message ?? 'Something went wrong.';
  return { message, code, reason: ext.reason, retryAfter: ext.retryAfter };
}

/** A reason that arrived without a GraphQL error (a provider round trip's `auth_error`). */
export function describeReason(reason: string): Problem {
  return { message: REASONS[reason] ?? 'Signing in did not work. Try again.', code: 'BAD_USER_INPUT', reason };
}
