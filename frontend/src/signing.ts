/**
 * The optional client signature of `prepareAdReward` (the server's CLIENT_SIGNING_SECRET):
 * hex HMAC-SHA256 of `userId|clientNonce|timestamp|placement`. The key is built into the
 * app (VITE_CLIENT_SIGNING_SECRET), so anyone can read it: it only raises the bar against
 * scripted clients, it proves nothing about a person.
 */
export const CLIENT_SIGNING_KEY: string | undefined = import.meta.env.VITE_CLIENT_SIGNING_SECRET || undefined;

export interface ClientClaim {
  userId: string;
  clientNonce: string;
  /** Unix seconds. */
  timestamp: number;
  placement: string;
}

export async function clientSignature(key: string, claim: ClientClaim): Promise<string> {
  const encoder = new TextEncoder();
  const hmac = await crypto.subtle.importKey('raw', encoder.encode(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const message = `${claim.userId}|${claim.clientNonce}|${claim.timestamp}|${claim.placement}`;
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', hmac, encoder.encode(message)));
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The signed fields for a prepare input, now. */
export async function signedClaim(key: string, userId: string, placement: string) {
  const clientNonce = crypto.randomUUID();
  const timestamp = Math.floor(Date.now() / 1000);
  const signature = await clientSignature(key, { userId, clientNonce, timestamp, placement });
  return { clientNonce, timestamp, signature };
}
