import { afterEach, describe, expect, it, vi } from 'vitest';
import { coinAmount, coins, coinsMissing, countdownSeconds, date, dateTime, money, signedCoins, timeLeft } from './format';

const NBSP = '\u00a0';
const MINUS = '\u2212';

describe('coins', () => {
  it.each([
    [0, '0'],
    [1, '1'],
    [21, '21'],
    // Whole coins, printed as the pages always have: no grouping, whatever the locale.
    [1500, '1500'],
    [1234567, '1234567'],
  ])('coinAmount(%d) → %s', (amount, text) => {
    expect(coinAmount(amount)).toBe(text);
  });

  it('a negative amount gets the typographic minus the wallet uses', () => {
    expect(coinAmount(-5)).toBe(`${MINUS}5`);
    expect(coins(-1200)).toBe(`${MINUS}1200 coins`);
  });

  it('"N coins"', () => {
    expect(coins(0)).toBe('0 coins');
    expect(coins(5)).toBe('5 coins');
    expect(coins(500)).toBe('500 coins');
  });

  it('a transfer: + for a credit, − (U+2212) for a debit', () => {
    expect(signedCoins('CREDIT', 5)).toBe('+5');
    expect(signedCoins('DEBIT', 21)).toBe(`${MINUS}21`);
    expect(signedCoins('DEBIT', 10000)).toBe(`${MINUS}10000`);
  });

  it('the shortfall when a price is more than what is available', () => {
    expect(coinsMissing(21, 5)).toBe('16 coins missing.');
    expect(coinsMissing(1, 0)).toBe('1 coins missing.');
    expect(coinsMissing(21, 21)).toBeNull();
    expect(coinsMissing(5, 21)).toBeNull();
    expect(coinsMissing(0, 0)).toBeNull();
  });
});

describe('money (the smallest unit of a currency)', () => {
  it('cents of a two-decimal currency', () => {
    expect(money(1999, 'USD', 'en-US')).toBe('$19.99');
    expect(money(0, 'usd', 'en-US')).toBe('$0.00');
    expect(money(123456789, 'usd', 'en-US')).toBe('$1,234,567.89');
    expect(money(-500, 'usd', 'en-US')).toBe('-$5.00');
  });

  it('takes Stripe’s lowercase codes and the reader’s locale', () => {
    expect(money(1250, 'eur', 'en-US')).toBe('€12.50');
    expect(money(123456, 'eur', 'de-DE')).toBe(`1.234,56${NBSP}€`);
  });

  it('a zero-decimal currency is not divided by 100', () => {
    expect(money(500, 'jpy', 'en-US')).toBe('¥500');
    expect(money(1500000, 'krw', 'en-US')).toBe('₩1,500,000');
  });

  it('a three-decimal currency is divided by 1000', () => {
    expect(money(1500, 'kwd', 'en-US')).toBe(`KWD${NBSP}1.500`);
  });
});

describe('dates', () => {
  const at = '2026-01-02T15:04:05Z';

  it('date and time in the given locale and time zone', () => {
    expect(dateTime(at, 'en-GB', 'UTC')).toBe('02/01/2026, 15:04:05');
    // The reader's zone decides the day.
    expect(dateTime(at, 'en-GB', 'Asia/Tokyo')).toBe('03/01/2026, 00:04:05');
  });

  it('a date alone', () => {
    expect(date(at, 'en-US', 'UTC')).toBe('1/2/2026');
    expect(date(at, 'de-DE', 'UTC')).toBe('2.1.2026');
    expect(date('2026-01-01T03:00:00Z', 'en-US', 'America/Los_Angeles')).toBe('12/31/2025');
  });

  it('without a locale: what the browser would print', () => {
    expect(dateTime(at)).toBe(new Date(at).toLocaleString());
    expect(date(at)).toBe(new Date(at).toLocaleDateString());
  });
});

describe('timeLeft', () => {
  const now = Date.parse('2026-01-02T12:00:00Z');
  const after = (ms: number) => new Date(now + ms).toISOString();
  const SECOND = 1000;
  const MINUTE = 60 * SECOND;
  const HOUR = 60 * MINUTE;
  const DAY = 24 * HOUR;

  afterEach(() => {
    vi.useRealTimers();
  });

  it.each([
    ['an hour ago', -HOUR, 'expired'],
    ['now', 0, 'expired'],
    ['1 ms', 1, '0 min left'],
    ['59 s', 59 * SECOND, '0 min left'],
    ['1 min', MINUTE, '1 min left'],
    ['90 s', 90 * SECOND, '1 min left'],
    ['59 min 59 s', HOUR - SECOND, '59 min left'],
    ['1 h', HOUR, '1 h 0 min left'],
    ['1 h 59 min 59 s', 2 * HOUR - SECOND, '1 h 59 min left'],
    ['23 h 59 min', DAY - MINUTE, '23 h 59 min left'],
    ['1 day', DAY, '24 h 0 min left'],
    ['1 day 1 h 5 min', DAY + HOUR + 5 * MINUTE, '25 h 5 min left'],
    ['30 days (a 720 h token)', 30 * DAY, '720 h 0 min left'],
  ])('%s → %s', (_, ms, text) => {
    expect(timeLeft(after(ms), now)).toBe(text);
  });

  it('counts from the clock by default', () => {
    vi.useFakeTimers();
    vi.setSystemTime(now);
    expect(timeLeft(after(2 * HOUR + 30 * MINUTE))).toBe('2 h 30 min left');
    vi.setSystemTime(now + 2 * HOUR + 29 * MINUTE + 30 * SECOND);
    expect(timeLeft(after(2 * HOUR + 30 * MINUTE))).toBe('0 min left');
    vi.setSystemTime(now + 3 * HOUR);
    expect(timeLeft(after(2 * HOUR + 30 * MINUTE))).toBe('expired');
  });
});

describe('countdownSeconds', () => {
  it.each([
    [30, 30],
    [1, 1],
    [0, 0],
    // A fraction rounds up: the countdown never ends before the server allows again.
    [0.2, 1],
    [2.5, 3],
    [-3, 0],
    [Number.NaN, 0],
    [Number.POSITIVE_INFINITY, 0],
  ])('%d → %d', (seconds, start) => {
    expect(countdownSeconds(seconds)).toBe(start);
  });
});
