import { describe, expect, it } from 'vitest';
import { clientSignature, signedClaim } from './signing';

const claim = { userId: '01a2-user', clientNonce: 'n-1', timestamp: 1_764_000_000, placement: 'earn' };

describe('client signature', () => {
  it('is the hex HMAC-SHA256 of userId|clientNonce|timestamp|placement', async () => {
    // Computed apart from this code (Python's hmac module).
    expect(await clientSignature('secret', claim)).toBe('a153b1c1c937cdad71ba23b5acb342afdd539b275c8b98d2a896216696274be7');
  });

  it('changes with every part of the claim and with the key', async () => {
    const base = await clientSignature('secret', claim);
    for (const changed of [
      { ...claim, userId: 'other' },
      { ...claim, clientNonce: 'n-2' },
      { ...claim, timestamp: claim.timestamp + 1 },
      { ...claim, placement: 'bonus' },
    ]) {
      expect(await clientSignature('secret', changed)).not.toBe(base);
    }
    expect(await clientSignature('other-secret', claim)).not.toBe(base);
  });

  it('signs a fresh nonce and the current second', async () => {
    const before = Math.floor(Date.now() / 1000);
    const a = await signedClaim('secret', 'u', 'earn');
    const b = await signedClaim('secret', 'u', 'earn');
    expect(a.clientNonce).not.toBe(b.clientNonce);
    expect(a.timestamp).toBeGreaterThanOrEqual(before);
    expect(a.timestamp).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    expect(a.signature).toBe(await clientSignature('secret', { userId: 'u', placement: 'earn', ...a }));
  });
});
