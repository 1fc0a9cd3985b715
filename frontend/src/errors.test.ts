import { CombinedError } from 'urql';
import { describe, expect, it } from 'vitest';
import { describe as describeError, describeReason } from './errors';

/** A refusal as the server sends it: message plus `extensions`. */
function refusal(extensions: Record<string, unknown>, message = 'server message'): CombinedError {
  return new CombinedError({ graphQLErrors: [{ message, extensions }] });
}

describe('describe (errors → sentences)', () => {
  it('describes nothing when there is no error', () => {
    expect(describeError(undefined)).toBeUndefined();
  });

  it.each([
    ['UNAUTHENTICATED', 'Please sign in.'],
    ['FORBIDDEN', 'You are not allowed to do this.'],
    ['BAD_USER_INPUT', 'Please check what you entered.'],
    ['NOT_FOUND', 'Not found.'],
    ['CONFLICT', 'That conflicts with the current state.'],
    ['INSUFFICIENT_FUNDS', 'You do not have enough coins.'],
    ['RATE_LIMITED', 'Too many attempts; wait a moment.'],
    ['NOT_CONFIGURED', 'This is not available on this server.'],
    ['UNAVAILABLE', 'A service is unavailable; try again shortly.'],
    ['INTERNAL', 'Something went wrong on our side.'],
  ])('code %s without a reason: its sentence, not the server message', (code, sentence) => {
    expect(describeError(refusal({ code }))).toEqual({ message: sentence, code, reason: undefined, retryAfter: undefined });
  });

  it.each([
    ['UNAUTHENTICATED', 'invalid_credentials', 'That email and password do not match.'],
    ['CONFLICT', 'email_taken', 'An account with this email exists already.'],
    ['CONFLICT', 'username_taken', 'This username is taken.'],
    ['BAD_USER_INPUT', 'weak_password', 'Choose a longer, less guessable password.'],
    ['BAD_USER_INPUT', 'invalid_token', 'This link or code is invalid or has expired.'],
    ['BAD_USER_INPUT', 'provider_disabled', 'This ad provider is not available.'],
    ['BAD_USER_INPUT', 'placement_not_allowed', 'This placement is not available.'],
    ['BAD_USER_INPUT', 'ticket_invalid', 'This ad could not be verified. Start a new one.'],
    ['BAD_USER_INPUT', 'ticket_expired', 'This ad expired. Start a new one.'],
    ['BAD_USER_INPUT', 'duration_too_short', 'The ad must stay visible a little longer.'],
    ['FORBIDDEN', 'turnstile_failed', 'The challenge was not passed. Try again.'],
    ['FORBIDDEN', 'network_blocked', 'Ads cannot be watched from this network.'],
    ['FORBIDDEN', 'bad_client_signature', 'This request could not be verified.'],
    ['FORBIDDEN', 'device_mismatch', 'The ad was started on another device.'],
    ['RATE_LIMITED', 'cooldown', 'Wait a moment before the next ad.'],
    ['RATE_LIMITED', 'daily_cap_user', "You've reached today's ad limit."],
    ['RATE_LIMITED', 'daily_cap_device', "This device has reached today's ad limit."],
    ['RATE_LIMITED', 'daily_cap_ip', "This network has reached today's ad limit."],
  ])('%s with reason %s: the reason’s sentence wins over the code’s', (code, reason, sentence) => {
    expect(describeError(refusal({ code, reason }))).toEqual({ message: sentence, code, reason, retryAfter: undefined });
  });

  it('a reason it does not know falls back to the code’s sentence and keeps the reason', () => {
    expect(describeError(refusal({ code: 'CONFLICT', reason: 'idempotency_key_reused' }))).toEqual({
      message: 'That conflicts with the current state.',
      code: 'CONFLICT',
      reason: 'idempotency_key_reused',
      retryAfter: undefined,
    });
  });

  it('RATE_LIMITED carries retryAfter for the countdown', () => {
    const problem = describeError(refusal({ code: 'RATE_LIMITED', retryAfter: 7 }));
    expect(problem?.message).toBe('Too many attempts; wait a moment.');
    expect(problem?.retryAfter).toBe(7);
  });

  it('a reason with retryAfter (an ad cooldown) keeps both', () => {
    expect(describeError(refusal({ code: 'RATE_LIMITED', reason: 'cooldown', retryAfter: 30 }))).toEqual({
      message: 'Wait a moment before the next ad.',
      code: 'RATE_LIMITED',
      reason: 'cooldown',
      retryAfter: 30,
    });
  });

  it('UNAVAILABLE carries retryAfter too', () => {
    expect(describeError(refusal({ code: 'UNAVAILABLE', retryAfter: 5 }))?.retryAfter).toBe(5);
  });

  it('INSUFFICIENT_FUNDS: the generic sentence (the server does not say how many coins are missing)', () => {
    // The server sends `reason: insufficient_funds` and no amount; the pages show the
    // shortfall themselves before the request (format.coinsMissing).
    const problem = describeError(refusal({ code: 'INSUFFICIENT_FUNDS', reason: 'insufficient_funds' }));
    expect(problem).toEqual({
      message: 'You do not have enough coins.',
      code: 'INSUFFICIENT_FUNDS',
      reason: 'insufficient_funds',
      retryAfter: undefined,
    });
  });

  it('a network error: cannot reach the server, code NETWORK, no countdown', () => {
    const problem = describeError(new CombinedError({ networkError: new TypeError('Failed to fetch') }));
    expect(problem).toEqual({ message: 'The server cannot be reached. Check your connection.', code: 'NETWORK' });
  });

  it('a network error wins over GraphQL errors that came with it', () => {
    const error = new CombinedError({
      networkError: new Error('socket closed'),
      graphQLErrors: [{ message: 'x', extensions: { code: 'FORBIDDEN' } }],
    });
    expect(describeError(error)?.code).toBe('NETWORK');
  });

  it('an unknown code shows the server’s own message and keeps the code', () => {
    expect(describeError(refusal({ code: 'PAYMENT_REQUIRED' }, 'Pay first.'))).toEqual({
      message: 'Pay first.',
      code: 'PAYMENT_REQUIRED',
      reason: undefined,
      retryAfter: undefined,
    });
  });

  it('an unknown code and an unknown reason still show the server’s message', () => {
    expect(describeError(refusal({ code: 'TEAPOT', reason: 'short_and_stout' }, 'I am a teapot.'))?.message).toBe('I am a teapot.');
  });

  it('an error without a code is INTERNAL: the server message is not shown', () => {
    const problem = describeError(refusal({}, 'database exploded at line 3'));
    expect(problem).toEqual({ message: 'Something went wrong on our side.', code: 'INTERNAL', reason: undefined, retryAfter: undefined });
  });

  it('of several errors, the first decides', () => {
    const error = new CombinedError({
      graphQLErrors: [
        { message: 'a', extensions: { code: 'NOT_FOUND' } },
        { message: 'b', extensions: { code: 'FORBIDDEN' } },
      ],
    });
    expect(describeError(error)?.message).toBe('Not found.');
  });
});

describe('describeReason (a provider round trip’s auth_error)', () => {
  it.each([
    ['access_denied', 'The sign-in was cancelled at the provider.'],
    ['provider_unavailable', 'The provider cannot be reached right now. Try again shortly.'],
    ['identity_in_use', 'That provider account is already linked to another account here.'],
  ])('%s has its sentence', (reason, message) => {
    expect(describeReason(reason)).toEqual({ message, code: 'BAD_USER_INPUT', reason });
  });

  it('an unknown reason still says that signing in failed', () => {
    expect(describeReason('something_new').message).toBe('Signing in did not work. Try again.');
  });
});
