/** Money, coins, times and durations as the pages print them: one implementation each. */

/** A whole number of coins, as printed: digits without grouping ("1500"), a typographic
 * minus (U+2212) when negative. */
export function coinAmount(amount: number): string {
  return amount < 0 ? `\u2212${-amount}` : String(amount);
}

/** "N coins". */
export function coins(amount: number): string {
  return `${coinAmount(amount)} coins`;
}

/** A wallet transfer's amount with its sign: "+5" for a credit, "−5" for a debit. */
export function signedCoins(direction: 'CREDIT' | 'DEBIT', amount: number): string {
  return `${direction === 'CREDIT' ? '+' : '\u2212'}${coinAmount(amount)}`;
}

/** "N coins missing." when a price is more than what is available, else null. */
export function coinsMissing(price: number, available: number): string | null {
  return price > available ? `${coins(price - available)} missing.` : null;
}

/** Stripe's zero- and three-decimal currencies: every other one has cents. */
const ZERO_DECIMAL = new Set(['BIF', 'CLP', 'DJF', 'GNF', 'JPY', 'KMF', 'KRW', 'MGA', 'PYG', 'RWF', 'UGX', 'VND', 'VUV', 'XAF', 'XOF', 'XPF']);
const THREE_DECIMAL = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);

/** An amount in the currency's smallest unit (what Stripe and the server give: cents, or
 * yen for JPY), in the reader's locale. */
export function money(minor: number, currency: string, locale?: string): string {
  const code = currency.toUpperCase();
  const unit = ZERO_DECIMAL.has(code) ? 1 : THREE_DECIMAL.has(code) ? 1000 : 100;
  return new Intl.NumberFormat(locale, { style: 'currency', currency: code }).format(minor / unit);
}

/** A date and time in the reader's locale and time zone (both can be fixed for tests). */
export function dateTime(value: string, locale?: string, timeZone?: string): string {
  return new Date(value).toLocaleString(locale, { timeZone });
}

/** A date in the reader's locale and time zone. */
export function date(value: string, locale?: string, timeZone?: string): string {
  return new Date(value).toLocaleDateString(locale, { timeZone });
}

/** Time until `expiresAt`: "2 h 5 min left", "5 min left" (whole minutes, rounded down),
 * or "expired". */
export function timeLeft(expiresAt: string, now: number = Date.now()): string {
  const ms = new Date(expiresAt).getTime() - now;
  if (ms <= 0) return 'expired';
  const hours = Math.floor(ms / 3_600_000);
  const minutes = Math.floor((ms % 3_600_000) / 60_000);
  return hours > 0 ? `${hours} h ${minutes} min left` : `${minutes} min left`;
}

/** Where a countdown of whole seconds starts: a fraction rounds up (never "try again"
 * early), nothing below zero. */
export function countdownSeconds(seconds: number): number {
  return Number.isFinite(seconds) ? Math.max(0, Math.ceil(seconds)) : 0;
}
