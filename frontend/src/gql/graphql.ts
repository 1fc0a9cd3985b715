/* eslint-disable */
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';
export type Maybe<T> = T | null;
export type InputMaybe<T> = T | null | undefined;
export type Exact<T extends { [key: string]: unknown }> = { [K in keyof T]: T[K] };
export type MakeOptional<T, K extends keyof T> = Omit<T, K> & { [SubKey in K]?: Maybe<T[SubKey]> };
export type MakeMaybe<T, K extends keyof T> = Omit<T, K> & { [SubKey in K]: Maybe<T[SubKey]> };
export type MakeEmpty<T extends { [key: string]: unknown }, K extends keyof T> = { [_ in K]?: never };
export type Incremental<T> = T | { [P in keyof T]?: P extends ' $fragmentName' | '__typename' ? T[P] : never };
/** All built-in and custom scalars, mapped to their actual values */
export type Scalars = {
  ID: { input: string; output: string; }
  String: { input: string; output: string; }
  Boolean: { input: boolean; output: boolean; }
  Int: { input: number; output: number; }
  Float: { input: number; output: number; }
  /**
   * Implement the DateTime<Utc> scalar
   *
   * The input/output is a string in RFC3339 format.
   */
  DateTime: { input: string; output: string; }
  /**
   * A UUID is a unique 128-bit number, stored as 16 octets. UUIDs are parsed as
   * Strings within GraphQL. UUIDs are used to assign unique identifiers to
   * entities without requiring a central allocating authority.
   *
   * # References
   *
   * * [Wikipedia: Universally Unique Identifier](http://en.wikipedia.org/wiki/Universally_unique_identifier)
   * * [RFC4122: A Universally Unique Identifier (UUID) URN Namespace](http://tools.ietf.org/html/rfc4122)
   */
  UUID: { input: string; output: string; }
};

/** What a holder or a service needs to use and check tokens. */
export type AccessProxyInfo = {
  __typename?: 'AccessProxyInfo';
  /** Where proxied requests go (`PUBLIC_URL/proxy`, or the proxy host). */
  baseUrl?: Maybe<Scalars['String']['output']>;
  configured: Scalars['Boolean']['output'];
  /** The root public key (`ed25519/<hex>`), to verify tokens offline. */
  publicKey: Scalars['String']['output'];
};

export type AccessToken = {
  __typename?: 'AccessToken';
  createdAt: Scalars['DateTime']['output'];
  durationHours: Scalars['Int']['output'];
  expiresAt: Scalars['DateTime']['output'];
  id: Scalars['ID']['output'];
  /** Recorded in batches: may trail real use by a minute. */
  lastUsedAt?: Maybe<Scalars['DateTime']['output']>;
  name?: Maybe<Scalars['String']['output']>;
  price: Scalars['Int']['output'];
  revokedAt?: Maybe<Scalars['DateTime']['output']>;
  status: AccessTokenStatus;
  /** The payment (none for a free duration). */
  transfer?: Maybe<Transfer>;
};

export type AccessTokenConnection = {
  __typename?: 'AccessTokenConnection';
  edges: Array<AccessTokenEdge>;
  pageInfo: PageInfo;
  totalCount: Scalars['Int']['output'];
};

export type AccessTokenEdge = {
  __typename?: 'AccessTokenEdge';
  cursor: Scalars['String']['output'];
  node: AccessToken;
};

export type AccessTokenPrice = {
  __typename?: 'AccessTokenPrice';
  durationHours: Scalars['Int']['output'];
  /** Coins. */
  price: Scalars['Int']['output'];
};

export type AccessTokenStatus =
  | 'ACTIVE'
  | 'EXPIRED'
  | 'REVOKED';

export type AdProvider =
  /** Google IMA: Google's server-side verification credits with no client call. */
  | 'GMA'
  /** Monetag's rewarded interstitial: the browser completes with its ticket. */
  | 'MONETAG';

export type AdReward = {
  __typename?: 'AdReward';
  amount: Scalars['Int']['output'];
  createdAt: Scalars['DateTime']['output'];
  id: Scalars['UUID']['output'];
  /** The network that confirmed it (`monetag`, `gma`, or the callback's own name). */
  network: Scalars['String']['output'];
  placement: Scalars['String']['output'];
  provider: AdProvider;
  transferId: Scalars['UUID']['output'];
};

export type AdRewardConnection = {
  __typename?: 'AdRewardConnection';
  edges: Array<AdRewardEdge>;
  pageInfo: PageInfo;
  totalCount: Scalars['Int']['output'];
};

export type AdRewardEdge = {
  __typename?: 'AdRewardEdge';
  cursor: Scalars['String']['output'];
  node: AdReward;
};

export type AdRewardOutcome =
  | 'CREDITED'
  /** This ad was credited already; nothing moved. */
  | 'DUPLICATE'
  /** Waiting for the network's confirmation; the credit follows without another call. */
  | 'PENDING';

export type AdRewardResult = {
  __typename?: 'AdRewardResult';
  /** The viewer's balance after it. */
  balance: Scalars['Int']['output'];
  /** Coins this call credited. */
  credited: Scalars['Int']['output'];
  status: AdRewardOutcome;
};

/** What the viewer may earn now. */
export type AdRewardStatus = {
  __typename?: 'AdRewardStatus';
  /** Coins per watched ad. */
  amount: Scalars['Int']['output'];
  /** Whether prepare needs a client signature. */
  clientSigningRequired: Scalars['Boolean']['output'];
  /** Seconds before the next reward is possible (0: now). */
  cooldownSeconds: Scalars['Int']['output'];
  /** The viewer's rewards per day today (after the adaptive cut). */
  dailyCap: Scalars['Int']['output'];
  defaultProvider?: Maybe<AdProvider>;
  deviceDailyCap: Scalars['Int']['output'];
  /**
   * Google's IMA SDK, which plays the GMA ad tag; null when GMA is off or its tag is
   * the development player (an address to open, not an ad tag).
   */
  imaSdkUrl?: Maybe<Scalars['String']['output']>;
  placements: Array<Scalars['String']['output']>;
  /** Providers offered here, the default first. */
  providers: Array<AdProvider>;
  /** Seconds an ad must stay visible. */
  requiredSeconds: Scalars['Int']['output'];
  /** Rewards credited to the viewer today (UTC). */
  todayCount: Scalars['Int']['output'];
  /** The Turnstile widget's script (explicit rendering), with the site key. */
  turnstileScriptUrl?: Maybe<Scalars['String']['output']>;
  /** Turnstile site key, when prepare needs a challenge token. */
  turnstileSiteKey?: Maybe<Scalars['String']['output']>;
};

/** A prepared ad: show it, then complete (Monetag) or let Google call back (GMA). */
export type AdRewardTicket = {
  __typename?: 'AdRewardTicket';
  /** The IMA ad tag (GMA). */
  adTagUrl?: Maybe<Scalars['String']['output']>;
  deviceHash: Scalars['String']['output'];
  expiresAt: Scalars['DateTime']['output'];
  monetag?: Maybe<MonetagParams>;
  nonce: Scalars['String']['output'];
  provider: AdProvider;
  requiredDurationSec: Scalars['Int']['output'];
  /** Signed; hand it back to `completeAdReward`. */
  ticket: Scalars['String']['output'];
};

export type AdStats = {
  __typename?: 'AdStats';
  coinsToday: Scalars['Int']['output'];
  /** The user cap after the adaptive cut (before the new-account halving). */
  effectiveDailyCap: Scalars['Int']['output'];
  /** Failed share of SSV callbacks over the last 30 minutes. */
  failureRatio: Scalars['Float']['output'];
  rewardsToday: Scalars['Int']['output'];
};

/** Everything only admins may read, one field per domain. */
export type AdminQuery = {
  __typename?: 'AdminQuery';
  /** Anyone's tokens (one user's with `userId`), newest first. */
  accessTokens: AccessTokenConnection;
  /** Ad rewards today and the fraud signal behind the cap. */
  adStats: AdStats;
  /** Billing's health: local state against Stripe's. */
  billing: BillingAdmin;
  ledger: Ledger;
  /** Anyone's sessions (one user's with `userId`), newest first. */
  vpsSessions: VpsSessionConnection;
  /** Every worker, by name. */
  workers: Array<Worker>;
};


/** Everything only admins may read, one field per domain. */
export type AdminQueryAccessTokensArgs = {
  activeOnly?: Scalars['Boolean']['input'];
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
  userId?: InputMaybe<Scalars['ID']['input']>;
};


/** Everything only admins may read, one field per domain. */
export type AdminQueryBillingArgs = {
  refresh?: Scalars['Boolean']['input'];
};


/** Everything only admins may read, one field per domain. */
export type AdminQueryVpsSessionsArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
  status?: InputMaybe<VpsSessionStatus>;
  userId?: InputMaybe<Scalars['ID']['input']>;
};

/** Credentials of a new session. Browsers also get them as HttpOnly cookies. */
export type AuthPayload = {
  __typename?: 'AuthPayload';
  /** Short-lived bearer token (`Authorization: Bearer …`). */
  accessToken: Scalars['String']['output'];
  accessTokenExpiresAt: Scalars['DateTime']['output'];
  /** Long-lived token for `refreshSession`; each use replaces it. */
  refreshToken: Scalars['String']['output'];
  user: User;
};

/** A configured way to sign in with another service. */
export type AuthProvider = {
  __typename?: 'AuthProvider';
  kind: AuthProviderKind;
  /** Where the browser goes to start (`GET`; add `redirect_to` for where to come back). */
  loginUrl: Scalars['String']['output'];
  /** Name to show on the button. */
  name: Scalars['String']['output'];
};

/** The sign-in providers Tessera knows. */
export type AuthProviderKind =
  | 'DISCORD'
  | 'GITHUB'
  | 'GOOGLE';

export type BillingAdmin = {
  __typename?: 'BillingAdmin';
  /**
   * Running subscriptions whose local state and Stripe's disagree, as of
   * `driftCheckedAt` (checked once a day, or now with `billing(refresh: true)`).
   */
  drift: Array<DriftEntry>;
  driftCheckedAt: Scalars['DateTime']['output'];
};

export type BillingPortalSession = {
  __typename?: 'BillingPortalSession';
  url: Scalars['String']['output'];
};

export type BillingStatus =
  | 'ACTIVE'
  | 'CANCELED'
  | 'INCOMPLETE'
  | 'INCOMPLETE_EXPIRED'
  | 'PAST_DUE'
  | 'PAUSED'
  | 'TRIALING'
  | 'UNPAID';

export type BillingSubscription = {
  __typename?: 'BillingSubscription';
  /**
   * Whether it gives access now: active or trialing, or past due within the grace days,
   * until the period (plus the grace) ends.
   */
  active: Scalars['Boolean']['output'];
  /** Ends with the period unless resumed. */
  cancelAtPeriodEnd: Scalars['Boolean']['output'];
  canceledAt?: Maybe<Scalars['DateTime']['output']>;
  currentPeriodEnd: Scalars['DateTime']['output'];
  currentPeriodStart: Scalars['DateTime']['output'];
  id: Scalars['ID']['output'];
  /** The plan it pays for (none for a Price no plan knows). */
  plan?: Maybe<Plan>;
  status: BillingStatus;
};

/** One step of a session's provisioning checklist. */
export type ChecklistStep = {
  __typename?: 'ChecklistStep';
  key: Scalars['String']['output'];
  message?: Maybe<Scalars['String']['output']>;
  position: Scalars['Int']['output'];
  status: StepStatus;
  title: Scalars['String']['output'];
  updatedAt?: Maybe<Scalars['DateTime']['output']>;
};

export type CheckoutSession = {
  __typename?: 'CheckoutSession';
  expiresAt: Scalars['DateTime']['output'];
  id: Scalars['String']['output'];
  /** Stripe's hosted Checkout page: send the browser there. */
  url: Scalars['String']['output'];
};

export type CompleteAdRewardInput = {
  /** Seconds the ad stayed visible, as the page counted them. */
  durationSec: Scalars['Int']['input'];
  ticket: Scalars['String']['input'];
};

/** Which way coins went, seen from the wallet being listed. */
export type Direction =
  /** Into this wallet. */
  | 'CREDIT'
  /** Out of this wallet. */
  | 'DEBIT';

export type DriftEntry = {
  __typename?: 'DriftEntry';
  local: Scalars['String']['output'];
  remote: Scalars['String']['output'];
  subscriptionId: Scalars['String']['output'];
};

export type Identity = {
  __typename?: 'Identity';
  /** The address the provider reported, verified or not. */
  email?: Maybe<Scalars['String']['output']>;
  emailVerified: Scalars['Boolean']['output'];
  lastLoginAt: Scalars['DateTime']['output'];
  linkedAt: Scalars['DateTime']['output'];
  provider?: Maybe<AuthProviderKind>;
  /** The provider's username (Discord username, GitHub login). */
  username?: Maybe<Scalars['String']['output']>;
};

/** The whole ledger at a glance. */
export type Ledger = {
  __typename?: 'Ledger';
  /** Sum of every balance. Must read 0. */
  imbalance: Scalars['Int']['output'];
  /** Coins reserved out less coins reserved in. Must read 0. */
  pendingImbalance: Scalars['Int']['output'];
  systemAccounts: Array<SystemAccountBalance>;
  /** Coins held by users. */
  totalUserBalances: Scalars['Int']['output'];
};

export type MonetagParams = {
  __typename?: 'MonetagParams';
  scriptUrl: Scalars['String']['output'];
  /** Monetag's user-data parameter: the nonce, echoed back in its postback. */
  ymid: Scalars['String']['output'];
  zoneId: Scalars['String']['output'];
};

export type Mutation = {
  __typename?: 'Mutation';
  /** Admin: takes a plan off sale (audited). */
  archivePlan: Plan;
  /** Cancels at the period's end (default) or now. */
  cancelSubscription: BillingSubscription;
  /** Changes the password; every other session ends. */
  changePassword: Scalars['Boolean']['output'];
  /**
   * Moves the running subscription to `planId`: an upgrade now, prorated and charged at
   * once; a downgrade without proration (the lower allowance starts next period).
   */
  changePlan: BillingSubscription;
  /**
   * Completes a Monetag ad: credits once (DUPLICATE on a retry), or PENDING until
   * Monetag's postback when the server waits for it.
   */
  completeAdReward: AdRewardResult;
  /** Admin: a new plan (synced to Stripe when it is configured; audited). */
  createPlan: Plan;
  /** Admin: adds a product (audited). */
  createVpsProduct: VpsProduct;
  /** Admin: registers a worker; its key id and secret are shown once (audited). */
  createWorker: WorkerCredentials;
  /** Admin: disables an account (audited); its sessions end at once. */
  disableUser: User;
  /** Pays for more hours (1 to 720). The same idempotency key extends once. */
  extendVpsSession: VpsSession;
  /** Admin: gives a user coins from `system:grants` (audited with the reason). */
  grantCoins: Transfer;
  /** Signs in with email and password. Wrong email and wrong password get the same answer. */
  login: AuthPayload;
  /** Signs in with a mailed code; the first use of a new address creates the account. */
  loginWithCode: AuthPayload;
  /** Ends this session, or every session of the account. */
  logout: Scalars['Boolean']['output'];
  /** Stripe's Billing Portal (cards, invoices) for the viewer's customer. */
  openBillingPortal: BillingPortalSession;
  /** Issues a nonce and a signed ticket for one ad, after the caller's checks. */
  prepareAdReward: AdRewardTicket;
  /** Buys a token with coins. The same `idempotencyKey` returns the same purchase. */
  purchaseAccessToken: PurchasedAccessToken;
  /**
   * Exchanges a refresh token (the argument, or the cookie) for new tokens. A token that
   * was already exchanged ends its session.
   */
  refreshSession: AuthPayload;
  /** Creates an account with email and password, and signs it in. */
  register: AuthPayload;
  /** Mails a new verification link and code to the signed-in user. */
  requestEmailVerification: Scalars['Boolean']['output'];
  /** Mails a six-digit sign-in code. Always true, whether or not the address has an account. */
  requestLoginCode: Scalars['Boolean']['output'];
  /** Mails a password-reset link. Always true, whether or not the address has an account. */
  requestPasswordReset: Scalars['Boolean']['output'];
  /** Sets a new password with a reset link's token (single use, 30 minutes); every session ends. */
  resetPassword: Scalars['Boolean']['output'];
  /** Undoes a scheduled cancellation while the period runs. */
  resumeSubscription: BillingSubscription;
  /**
   * Revokes a token at once, on every instance (its open WebSockets close). Yours, or
   * anyone's for an admin. Revoking twice returns it unchanged.
   */
  revokeAccessToken: AccessToken;
  /** Signs one of your devices out. */
  revokeSession: Scalars['Boolean']['output'];
  /** Admin: changes a user's role (audited). Their sessions end so the change holds at once. */
  setUserRole: User;
  /** Admin: online, draining (no new sessions) or disabled (every request refused). */
  setWorkerStatus: Worker;
  /**
   * A Stripe Checkout to subscribe to `planId` (CONFLICT while a subscription is
   * active: use `changePlan`).
   */
  startCheckout: CheckoutSession;
  /**
   * Starts a session: reserves hours × price now, posted when the machine runs. Placed on
   * a worker with room, or queued until one has.
   */
  startVpsSession: VpsSession;
  /**
   * Stops a session; unused whole hours come back (everything, if it never ran).
   * Stopping twice returns it unchanged.
   */
  stopVpsSession: VpsSession;
  /** Admin: every plan's Product and Price brought in line with it. */
  syncPlansToStripe: Array<Plan>;
  /** Removes a linked provider. Refused when it is the only way left to sign in. */
  unlinkIdentity: User;
  /**
   * Admin: new terms make a new Stripe Price; subscribers keep theirs until they change
   * plan (audited).
   */
  updatePlan: Plan;
  /**
   * Changes your username, display name or avatar; omitted fields stay, "" clears an
   * optional one.
   */
  updateProfile: User;
  /** Admin: changes a product (audited). Started sessions keep their price. */
  updateVpsProduct: VpsProduct;
  /** Confirms the email address with the mailed link token, or (signed in) the mailed code. */
  verifyEmail: User;
};


export type MutationArchivePlanArgs = {
  id: Scalars['ID']['input'];
};


export type MutationCancelSubscriptionArgs = {
  atPeriodEnd?: Scalars['Boolean']['input'];
};


export type MutationChangePasswordArgs = {
  currentPassword: Scalars['String']['input'];
  newPassword: Scalars['String']['input'];
};


export type MutationChangePlanArgs = {
  planId: Scalars['ID']['input'];
};


export type MutationCompleteAdRewardArgs = {
  input: CompleteAdRewardInput;
};


export type MutationCreatePlanArgs = {
  input: PlanInput;
};


export type MutationCreateVpsProductArgs = {
  input: VpsProductInput;
};


export type MutationCreateWorkerArgs = {
  input: WorkerInput;
};


export type MutationDisableUserArgs = {
  userId: Scalars['ID']['input'];
};


export type MutationExtendVpsSessionArgs = {
  hours: Scalars['Int']['input'];
  id: Scalars['ID']['input'];
  idempotencyKey?: InputMaybe<Scalars['String']['input']>;
};


export type MutationGrantCoinsArgs = {
  amount: Scalars['Int']['input'];
  idempotencyKey?: InputMaybe<Scalars['String']['input']>;
  reason: Scalars['String']['input'];
  userId: Scalars['ID']['input'];
};


export type MutationLoginArgs = {
  email: Scalars['String']['input'];
  password: Scalars['String']['input'];
};


export type MutationLoginWithCodeArgs = {
  code: Scalars['String']['input'];
  email: Scalars['String']['input'];
};


export type MutationLogoutArgs = {
  allSessions?: Scalars['Boolean']['input'];
};


export type MutationPrepareAdRewardArgs = {
  input: PrepareAdRewardInput;
};


export type MutationPurchaseAccessTokenArgs = {
  input: PurchaseAccessTokenInput;
};


export type MutationRefreshSessionArgs = {
  refreshToken?: InputMaybe<Scalars['String']['input']>;
};


export type MutationRegisterArgs = {
  input: RegisterInput;
};


export type MutationRequestLoginCodeArgs = {
  email: Scalars['String']['input'];
};


export type MutationRequestPasswordResetArgs = {
  email: Scalars['String']['input'];
};


export type MutationResetPasswordArgs = {
  newPassword: Scalars['String']['input'];
  token: Scalars['String']['input'];
};


export type MutationRevokeAccessTokenArgs = {
  id: Scalars['ID']['input'];
};


export type MutationRevokeSessionArgs = {
  id: Scalars['ID']['input'];
};


export type MutationSetUserRoleArgs = {
  role: Role;
  userId: Scalars['ID']['input'];
};


export type MutationSetWorkerStatusArgs = {
  id: Scalars['ID']['input'];
  status: WorkerStatus;
};


export type MutationStartCheckoutArgs = {
  planId: Scalars['ID']['input'];
};


export type MutationStartVpsSessionArgs = {
  input: StartVpsSessionInput;
};


export type MutationStopVpsSessionArgs = {
  id: Scalars['ID']['input'];
};


export type MutationUnlinkIdentityArgs = {
  provider: AuthProviderKind;
};


export type MutationUpdatePlanArgs = {
  id: Scalars['ID']['input'];
  input: PlanInput;
};


export type MutationUpdateProfileArgs = {
  input: UpdateProfileInput;
};


export type MutationUpdateVpsProductArgs = {
  id: Scalars['ID']['input'];
  input: VpsProductInput;
};


export type MutationVerifyEmailArgs = {
  token: Scalars['String']['input'];
};

export type PageInfo = {
  __typename?: 'PageInfo';
  endCursor?: Maybe<Scalars['String']['output']>;
  hasNextPage: Scalars['Boolean']['output'];
  /** Always false: lists page forward only. */
  hasPreviousPage: Scalars['Boolean']['output'];
  startCursor?: Maybe<Scalars['String']['output']>;
};

export type Payment = {
  __typename?: 'Payment';
  amountCents: Scalars['Int']['output'];
  /** Coins this payment credited. */
  coinAllowance: Scalars['Int']['output'];
  currency: Scalars['String']['output'];
  hostedInvoiceUrl?: Maybe<Scalars['String']['output']>;
  id: Scalars['ID']['output'];
  invoiceId: Scalars['String']['output'];
  paidAt: Scalars['DateTime']['output'];
  status: Scalars['String']['output'];
};

export type PaymentConnection = {
  __typename?: 'PaymentConnection';
  edges: Array<PaymentEdge>;
  pageInfo: PageInfo;
  totalCount: Scalars['Int']['output'];
};

export type PaymentEdge = {
  __typename?: 'PaymentEdge';
  cursor: Scalars['String']['output'];
  node: Payment;
};

export type Plan = {
  __typename?: 'Plan';
  active: Scalars['Boolean']['output'];
  /** Coins credited for each paid period. */
  coinAllowance: Scalars['Int']['output'];
  /** ISO 4217, lower case. */
  currency: Scalars['String']['output'];
  description: Scalars['String']['output'];
  id: Scalars['ID']['output'];
  interval: PlanInterval;
  name: Scalars['String']['output'];
  /** Price per interval in the currency's smallest unit. */
  priceCents: Scalars['Int']['output'];
  /** The Stripe Price that sells it now (none until synced). */
  stripePriceId?: Maybe<Scalars['String']['output']>;
  /** Orders plans: moving to a higher tier is an upgrade. */
  tier: Scalars['Int']['output'];
};

export type PlanChangeLine = {
  __typename?: 'PlanChangeLine';
  amountCents: Scalars['Int']['output'];
  description: Scalars['String']['output'];
};

export type PlanChangePreview = {
  __typename?: 'PlanChangePreview';
  /** Charged now (0 for a downgrade: the new price starts next period). */
  amountDueCents: Scalars['Int']['output'];
  currency: Scalars['String']['output'];
  /**
   * An upgrade: the proration lines charged now. A downgrade: the next period's invoice
   * at the new price.
   */
  lines: Array<PlanChangeLine>;
};

export type PlanInput = {
  active?: Scalars['Boolean']['input'];
  coinAllowance: Scalars['Int']['input'];
  currency?: Scalars['String']['input'];
  description?: Scalars['String']['input'];
  interval?: PlanInterval;
  name: Scalars['String']['input'];
  priceCents: Scalars['Int']['input'];
  tier?: Scalars['Int']['input'];
};

export type PlanInterval =
  | 'MONTH'
  | 'YEAR';

export type PrepareAdRewardInput = {
  /** With `timestamp` and `signature` when the server requires client signing. */
  clientNonce?: InputMaybe<Scalars['String']['input']>;
  placement: Scalars['String']['input'];
  provider: AdProvider;
  /** Hex HMAC-SHA256 of `userId|clientNonce|timestamp|placement` (or `X-Client-Signature`). */
  signature?: InputMaybe<Scalars['String']['input']>;
  /** Unix seconds. */
  timestamp?: InputMaybe<Scalars['Int']['input']>;
  turnstileToken?: InputMaybe<Scalars['String']['input']>;
};

export type PurchaseAccessTokenInput = {
  durationHours: Scalars['Int']['input'];
  idempotencyKey?: InputMaybe<Scalars['String']['input']>;
  name?: InputMaybe<Scalars['String']['input']>;
};

export type PurchasedAccessToken = {
  __typename?: 'PurchasedAccessToken';
  accessToken: AccessToken;
  /** The secret (`tsr_at_…`). Shown once: it is not stored anywhere. */
  token: Scalars['String']['output'];
};

export type Query = {
  __typename?: 'Query';
  accessProxy: AccessProxyInfo;
  /** Durations on offer (hours) and their prices in coins. */
  accessTokenPrices: Array<AccessTokenPrice>;
  /** Providers, amount, cooldown left, today's count and caps, for the viewer. */
  adRewardStatus: AdRewardStatus;
  /** Admin-only reads (FORBIDDEN for everyone else). */
  admin: AdminQuery;
  /** Sign-in providers that are configured, with the URL that starts each. */
  authProviders: Array<AuthProvider>;
  /** Whether plans can be bought here (Stripe is configured). */
  billingConfigured: Scalars['Boolean']['output'];
  /**
   * The signed-in user; null when anonymous. A refused credential is an UNAUTHENTICATED
   * error with the reason, so a client knows to refresh.
   */
  me?: Maybe<User>;
  /** Plans on sale, lowest tier first (`includeArchived`: admins only). */
  plans: Array<Plan>;
  /**
   * What changing to `planId` would charge now: an upgrade's proration, or nothing for
   * a downgrade (its lower price starts next period).
   */
  previewPlanChange: PlanChangePreview;
  /** Version and backends of the server answering. */
  serverInfo: ServerInfo;
  /** Machines on sale, cheapest first (admins may ask for inactive ones too). */
  vpsProducts: Array<VpsProduct>;
  /** A session: yours, or anyone's for an admin. NOT_FOUND for anyone else. */
  vpsSession?: Maybe<VpsSession>;
};


export type QueryPlansArgs = {
  includeArchived?: Scalars['Boolean']['input'];
};


export type QueryPreviewPlanChangeArgs = {
  planId: Scalars['ID']['input'];
};


export type QueryVpsProductsArgs = {
  includeInactive?: Scalars['Boolean']['input'];
};


export type QueryVpsSessionArgs = {
  id: Scalars['ID']['input'];
};

export type RegisterInput = {
  email: Scalars['String']['input'];
  password: Scalars['String']['input'];
  username: Scalars['String']['input'];
};

/** A user's role. */
export type Role =
  | 'ADMIN'
  | 'USER';

/** Facts about the running server. */
export type ServerInfo = {
  __typename?: 'ServerInfo';
  /** `sqlite` or `postgres`. */
  databaseBackend: Scalars['String']['output'];
  /** `memory` (single instance) or `redis` (shared between instances). */
  kvBackend: Scalars['String']['output'];
  /** When this instance started. */
  startedAt: Scalars['DateTime']['output'];
  /** Version of the server package. */
  version: Scalars['String']['output'];
};

export type Session = {
  __typename?: 'Session';
  /** Whether this is the session making the request. */
  current: Scalars['Boolean']['output'];
  expiresAt: Scalars['DateTime']['output'];
  /** Pass to `revokeSession` to sign this device out. */
  id: Scalars['ID']['output'];
  ip?: Maybe<Scalars['String']['output']>;
  lastUsedAt: Scalars['DateTime']['output'];
  /** When the current refresh token was issued. */
  refreshedAt: Scalars['DateTime']['output'];
  userAgent?: Maybe<Scalars['String']['output']>;
};

export type StartVpsSessionInput = {
  /** 1 to 720. */
  hours: Scalars['Int']['input'];
  /** The same key returns the same session and pays once. */
  idempotencyKey?: InputMaybe<Scalars['String']['input']>;
  productId: Scalars['ID']['input'];
  /** An OpenSSH public key line; without one, a one-time password is made. */
  sshPublicKey?: InputMaybe<Scalars['String']['input']>;
};

export type StepStatus =
  | 'DONE'
  | 'FAILED'
  | 'PENDING'
  | 'RUNNING';

export type Subscription = {
  __typename?: 'Subscription';
  /** The viewer's subscription each time it changes (on any instance). */
  subscriptionChanged?: Maybe<BillingSubscription>;
  /**
   * A session's progress: first a snapshot of the session and its whole checklist (or,
   * with `afterSeq`, every event after it), then each change in `seq` order, across
   * instances, none lost or repeated. Ends when the session ends. Owner or admin only.
   */
  vpsSessionProgress: VpsSessionEvent;
  /**
   * The viewer's wallet after each change (from any instance). A gap in delivery also
   * yields the wallet, so a client is never left with a stale balance.
   */
  walletChanged: Wallet;
};


export type SubscriptionVpsSessionProgressArgs = {
  afterSeq?: InputMaybe<Scalars['Int']['input']>;
  sessionId: Scalars['ID']['input'];
};

/**
 * Accounts that belong to Tessera rather than a user. They may go negative: a system
 * account's negative balance is what it has issued.
 */
export type SystemAccount =
  /** Pays ad rewards. */
  | 'ADS'
  /** Pays admin grants. */
  | 'GRANTS'
  /** Pays plans' coin allowances. */
  | 'PLANS'
  /** Pays refunds that are not reversals of a transfer. */
  | 'REFUNDS'
  /** Receives what users spend on access tokens and VPS sessions. */
  | 'SALES';

export type SystemAccountBalance = {
  __typename?: 'SystemAccountBalance';
  /** Negative: coins this account has issued. */
  balance: Scalars['Int']['output'];
  name: Scalars['String']['output'];
};

export type Transfer = {
  __typename?: 'Transfer';
  amount: Scalars['Int']['output'];
  /** This wallet's posted balance right after the transfer. */
  balanceAfter: Scalars['Int']['output'];
  /** The Tessera account on the other side, when it is one. */
  counterparty?: Maybe<SystemAccount>;
  createdAt: Scalars['DateTime']['output'];
  direction: Direction;
  /** For a reservation: when it releases itself unless posted. */
  expiresAt?: Maybe<Scalars['DateTime']['output']>;
  id: Scalars['ID']['output'];
  kind?: Maybe<TransferKind>;
  /** What it paid for (an access token, a VPS session, …). */
  reference?: Maybe<Scalars['String']['output']>;
  status: TransferStatus;
};

export type TransferConnection = {
  __typename?: 'TransferConnection';
  edges: Array<TransferEdge>;
  pageInfo: PageInfo;
  totalCount: Scalars['Int']['output'];
};

export type TransferEdge = {
  __typename?: 'TransferEdge';
  cursor: Scalars['String']['output'];
  node: Transfer;
};

/** What a transfer paid for. */
export type TransferKind =
  | 'ACCESS_TOKEN'
  | 'AD_REWARD'
  | 'GRANT'
  | 'PLAN_ALLOWANCE'
  | 'REFUND'
  | 'VPS_SESSION';

export type TransferStatus =
  /** A reservation that ran out of time and was released. */
  | 'EXPIRED'
  /** Reserved: counted against `available`, not yet moved. */
  | 'PENDING'
  /** Moved. */
  | 'POSTED'
  /** A reservation released without moving. */
  | 'VOIDED';

export type UpdateProfileInput = {
  /** An https:// URL. */
  avatarUrl?: InputMaybe<Scalars['String']['input']>;
  displayName?: InputMaybe<Scalars['String']['input']>;
  username?: InputMaybe<Scalars['String']['input']>;
};

export type User = {
  __typename?: 'User';
  /** Bought access tokens, newest first. The user themself or admins only. */
  accessTokens: AccessTokenConnection;
  /** Credited ad rewards, newest first. The user themself or admins only. */
  adRewards: AdRewardConnection;
  avatarUrl?: Maybe<Scalars['String']['output']>;
  createdAt: Scalars['DateTime']['output'];
  /** Set when an admin disabled the account. */
  disabledAt?: Maybe<Scalars['DateTime']['output']>;
  displayName?: Maybe<Scalars['String']['output']>;
  /** Shown to the user themself and to admins only. */
  email?: Maybe<Scalars['String']['output']>;
  emailVerified: Scalars['Boolean']['output'];
  id: Scalars['ID']['output'];
  /** Linked sign-in providers, oldest first. The user themself or admins only. */
  identities: Array<Identity>;
  /** Paid invoices, newest first. The user themself or admins only. */
  payments: PaymentConnection;
  role: Role;
  /** Signed-in sessions (devices), newest first. The user themself or admins only. */
  sessions: Array<Session>;
  /** The current plan subscription, if any. The user themself or admins only. */
  subscription?: Maybe<BillingSubscription>;
  username: Scalars['String']['output'];
  /**
   * VPS sessions, newest first (one status with `status`). The user themself or admins
   * only.
   */
  vpsSessions: VpsSessionConnection;
  /** Coins. The user themself or admins only. */
  wallet: Wallet;
};


export type UserAccessTokensArgs = {
  activeOnly?: Scalars['Boolean']['input'];
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
};


export type UserAdRewardsArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
};


export type UserPaymentsArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
};


export type UserVpsSessionsArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
  status?: InputMaybe<VpsSessionStatus>;
};

/** How to reach a running machine. Only its owner and admins see it. */
export type VpsConnection = {
  __typename?: 'VpsConnection';
  host: Scalars['String']['output'];
  /** The one-time password, when the session was started without an SSH key. */
  password?: Maybe<Scalars['String']['output']>;
  port: Scalars['Int']['output'];
  username: Scalars['String']['output'];
  /** Sign in with the SSH key given at start. */
  usesSshKey: Scalars['Boolean']['output'];
};

export type VpsProduct = {
  __typename?: 'VpsProduct';
  /** Inactive products cannot be started. */
  active: Scalars['Boolean']['output'];
  createdAt: Scalars['DateTime']['output'];
  description: Scalars['String']['output'];
  diskGb: Scalars['Int']['output'];
  id: Scalars['ID']['output'];
  memoryMb: Scalars['Int']['output'];
  name: Scalars['String']['output'];
  /** Coins per hour. */
  pricePerHour: Scalars['Int']['output'];
  region: Scalars['String']['output'];
  vcpu: Scalars['Int']['output'];
};

export type VpsProductInput = {
  active?: Scalars['Boolean']['input'];
  description?: Scalars['String']['input'];
  diskGb: Scalars['Int']['input'];
  memoryMb: Scalars['Int']['input'];
  name: Scalars['String']['input'];
  /** Coins per hour. */
  pricePerHour: Scalars['Int']['input'];
  region: Scalars['String']['input'];
  vcpu: Scalars['Int']['input'];
};

export type VpsSession = {
  __typename?: 'VpsSession';
  /** Coins paid (or reserved, before it runs), extensions included. */
  amountPaid: Scalars['Int']['output'];
  /** Coins given back: unused whole hours, or everything when it never ran. */
  amountRefunded: Scalars['Int']['output'];
  checklist: Array<ChecklistStep>;
  /** Where to connect, once running (null before and after). */
  connection?: Maybe<VpsConnection>;
  createdAt: Scalars['DateTime']['output'];
  endedAt?: Maybe<Scalars['DateTime']['output']>;
  /** When it expires (set once running; moves with each extension). */
  endsAt?: Maybe<Scalars['DateTime']['output']>;
  failureReason?: Maybe<Scalars['String']['output']>;
  /** Hours paid for, extensions included. */
  hours: Scalars['Int']['output'];
  id: Scalars['ID']['output'];
  /** Seq of its newest progress event (pass it as `afterSeq` to resume a stream). */
  lastSeq: Scalars['Int']['output'];
  /** Coins per hour, as when it was started. */
  pricePerHour: Scalars['Int']['output'];
  product?: Maybe<VpsProduct>;
  runningAt?: Maybe<Scalars['DateTime']['output']>;
  status: VpsSessionStatus;
  /** Its payments and refunds, oldest first. */
  transfers: Array<Transfer>;
};

export type VpsSessionConnection = {
  __typename?: 'VpsSessionConnection';
  edges: Array<VpsSessionEdge>;
  pageInfo: PageInfo;
  totalCount: Scalars['Int']['output'];
};

export type VpsSessionEdge = {
  __typename?: 'VpsSessionEdge';
  cursor: Scalars['String']['output'];
  node: VpsSession;
};

/** One event of a progress stream. */
export type VpsSessionEvent = {
  __typename?: 'VpsSessionEvent';
  changedSteps: Array<ChecklistStep>;
  seq: Scalars['Int']['output'];
  session: VpsSession;
  /** True for the first event without `afterSeq`: the whole checklist as of `seq`. */
  snapshot: Scalars['Boolean']['output'];
};

/** Where a session is in its life. */
export type VpsSessionStatus =
  | 'EXPIRED'
  | 'FAILED'
  /** Paid, assigned to a worker that has not picked it up yet. */
  | 'PENDING'
  /** A worker is running the checklist. */
  | 'PROVISIONING'
  /** Paid, waiting for a worker with free capacity. */
  | 'QUEUED'
  | 'RUNNING'
  | 'STOPPED'
  /** Stopped by its owner; the worker is tearing it down. */
  | 'STOPPING';

export type Wallet = {
  __typename?: 'Wallet';
  /** Coins that can be spent now: the balance less what open reservations hold. */
  available: Scalars['Int']['output'];
  /** Coins posted to the account. */
  balance: Scalars['Int']['output'];
  /** Movements in and out, newest first. */
  transfers: TransferConnection;
};


export type WalletTransfersArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
  kind?: InputMaybe<TransferKind>;
};

export type Worker = {
  __typename?: 'Worker';
  capacity: Scalars['Int']['output'];
  createdAt: Scalars['DateTime']['output'];
  id: Scalars['ID']['output'];
  keyId: Scalars['String']['output'];
  lastHeartbeatAt?: Maybe<Scalars['DateTime']['output']>;
  /** Sessions holding a slot on it now. */
  load: Scalars['Int']['output'];
  name: Scalars['String']['output'];
  /** Heard from within the heartbeat timeout. */
  online: Scalars['Boolean']['output'];
  status: WorkerStatus;
};

/** A new worker's credentials: shown once. */
export type WorkerCredentials = {
  __typename?: 'WorkerCredentials';
  keyId: Scalars['String']['output'];
  secret: Scalars['String']['output'];
  worker: Worker;
};

export type WorkerInput = {
  /** Sessions it runs at once until its first heartbeat says otherwise. */
  capacity?: Scalars['Int']['input'];
  /** Letters, digits, '-', '_' or '.'. */
  name: Scalars['String']['input'];
};

/** A worker's status as an admin set it. */
export type WorkerStatus =
  /** Every request refused. */
  | 'DISABLED'
  /** Finishes what it has, gets nothing new. */
  | 'DRAINING'
  /** Gets new sessions. */
  | 'ONLINE';

export type MeQueryVariables = Exact<{ [key: string]: never; }>;


export type MeQuery = { __typename?: 'Query', me?: { __typename?: 'User', id: string, username: string } | null };

export type LogoutMutationVariables = Exact<{ [key: string]: never; }>;


export type LogoutMutation = { __typename?: 'Mutation', logout: boolean };

export type MySessionsQueryVariables = Exact<{ [key: string]: never; }>;


export type MySessionsQuery = { __typename?: 'Query', me?: { __typename?: 'User', id: string, email?: string | null, emailVerified: boolean, sessions: Array<{ __typename?: 'Session', id: string, userAgent?: string | null, ip?: string | null, lastUsedAt: string, current: boolean }> } | null };

export type RevokeSessionMutationVariables = Exact<{
  id: Scalars['ID']['input'];
}>;


export type RevokeSessionMutation = { __typename?: 'Mutation', revokeSession: boolean };

export type AdStatusQueryVariables = Exact<{ [key: string]: never; }>;


export type AdStatusQuery = { __typename?: 'Query', adRewardStatus: { __typename?: 'AdRewardStatus', providers: Array<AdProvider>, defaultProvider?: AdProvider | null, amount: number, requiredSeconds: number, cooldownSeconds: number, todayCount: number, dailyCap: number, placements: Array<string>, turnstileSiteKey?: string | null, turnstileScriptUrl?: string | null, clientSigningRequired: boolean, imaSdkUrl?: string | null } };

export type PrepareAdMutationVariables = Exact<{
  input: PrepareAdRewardInput;
}>;


export type PrepareAdMutation = { __typename?: 'Mutation', prepareAdReward: { __typename?: 'AdRewardTicket', provider: AdProvider, nonce: string, ticket: string, requiredDurationSec: number, adTagUrl?: string | null, monetag?: { __typename?: 'MonetagParams', zoneId: string, scriptUrl: string, ymid: string } | null } };

export type CompleteAdMutationVariables = Exact<{
  input: CompleteAdRewardInput;
}>;


export type CompleteAdMutation = { __typename?: 'Mutation', completeAdReward: { __typename?: 'AdRewardResult', status: AdRewardOutcome, credited: number, balance: number } };

export type EarnWalletSubscriptionVariables = Exact<{ [key: string]: never; }>;


export type EarnWalletSubscription = { __typename?: 'Subscription', walletChanged: { __typename?: 'Wallet', balance: number } };

export type VerifyEmailMutationVariables = Exact<{
  token: Scalars['String']['input'];
}>;


export type VerifyEmailMutation = { __typename?: 'Mutation', verifyEmail: { __typename?: 'User', id: string, emailVerified: boolean } };

export type ResetPasswordMutationVariables = Exact<{
  token: Scalars['String']['input'];
  password: Scalars['String']['input'];
}>;


export type ResetPasswordMutation = { __typename?: 'Mutation', resetPassword: boolean };

export type PlansQueryVariables = Exact<{ [key: string]: never; }>;


export type PlansQuery = { __typename?: 'Query', billingConfigured: boolean, plans: Array<{ __typename?: 'Plan', id: string, name: string, tier: number, description: string, priceCents: number, currency: string, interval: PlanInterval, coinAllowance: number }>, me?: { __typename?: 'User', id: string, subscription?: { __typename?: 'BillingSubscription', id: string, status: BillingStatus, active: boolean, cancelAtPeriodEnd: boolean, currentPeriodEnd: string, plan?: { __typename?: 'Plan', id: string, name: string } | null } | null, payments: { __typename?: 'PaymentConnection', edges: Array<{ __typename?: 'PaymentEdge', node: { __typename?: 'Payment', id: string, amountCents: number, currency: string, coinAllowance: number, hostedInvoiceUrl?: string | null, paidAt: string } }> } } | null };

export type SubscriptionChangedSubscriptionVariables = Exact<{ [key: string]: never; }>;


export type SubscriptionChangedSubscription = { __typename?: 'Subscription', subscriptionChanged?: { __typename?: 'BillingSubscription', id: string, status: BillingStatus } | null };

export type StartCheckoutMutationVariables = Exact<{
  planId: Scalars['ID']['input'];
}>;


export type StartCheckoutMutation = { __typename?: 'Mutation', startCheckout: { __typename?: 'CheckoutSession', url: string } };

export type PreviewPlanChangeQueryVariables = Exact<{
  planId: Scalars['ID']['input'];
}>;


export type PreviewPlanChangeQuery = { __typename?: 'Query', previewPlanChange: { __typename?: 'PlanChangePreview', amountDueCents: number, currency: string, lines: Array<{ __typename?: 'PlanChangeLine', description: string, amountCents: number }> } };

export type ChangePlanMutationVariables = Exact<{
  planId: Scalars['ID']['input'];
}>;


export type ChangePlanMutation = { __typename?: 'Mutation', changePlan: { __typename?: 'BillingSubscription', id: string, plan?: { __typename?: 'Plan', id: string, name: string } | null } };

export type CancelSubscriptionMutationVariables = Exact<{ [key: string]: never; }>;


export type CancelSubscriptionMutation = { __typename?: 'Mutation', cancelSubscription: { __typename?: 'BillingSubscription', id: string, cancelAtPeriodEnd: boolean } };

export type ResumeSubscriptionMutationVariables = Exact<{ [key: string]: never; }>;


export type ResumeSubscriptionMutation = { __typename?: 'Mutation', resumeSubscription: { __typename?: 'BillingSubscription', id: string, cancelAtPeriodEnd: boolean } };

export type OpenBillingPortalMutationVariables = Exact<{ [key: string]: never; }>;


export type OpenBillingPortalMutation = { __typename?: 'Mutation', openBillingPortal: { __typename?: 'BillingPortalSession', url: string } };

export type LoginMutationVariables = Exact<{
  email: Scalars['String']['input'];
  password: Scalars['String']['input'];
}>;


export type LoginMutation = { __typename?: 'Mutation', login: { __typename?: 'AuthPayload', user: { __typename?: 'User', id: string, username: string } } };

export type RequestLoginCodeMutationVariables = Exact<{
  email: Scalars['String']['input'];
}>;


export type RequestLoginCodeMutation = { __typename?: 'Mutation', requestLoginCode: boolean };

export type LoginWithCodeMutationVariables = Exact<{
  email: Scalars['String']['input'];
  code: Scalars['String']['input'];
}>;


export type LoginWithCodeMutation = { __typename?: 'Mutation', loginWithCode: { __typename?: 'AuthPayload', user: { __typename?: 'User', id: string, username: string } } };

export type RequestPasswordResetMutationVariables = Exact<{
  email: Scalars['String']['input'];
}>;


export type RequestPasswordResetMutation = { __typename?: 'Mutation', requestPasswordReset: boolean };

export type RegisterMutationVariables = Exact<{
  input: RegisterInput;
}>;


export type RegisterMutation = { __typename?: 'Mutation', register: { __typename?: 'AuthPayload', user: { __typename?: 'User', id: string, username: string } } };

export type ProvidersQueryVariables = Exact<{ [key: string]: never; }>;


export type ProvidersQuery = { __typename?: 'Query', authProviders: Array<{ __typename?: 'AuthProvider', kind: AuthProviderKind, name: string, loginUrl: string }> };

export type AccessTokensQueryVariables = Exact<{ [key: string]: never; }>;


export type AccessTokensQuery = { __typename?: 'Query', accessTokenPrices: Array<{ __typename?: 'AccessTokenPrice', durationHours: number, price: number }>, accessProxy: { __typename?: 'AccessProxyInfo', configured: boolean, baseUrl?: string | null }, me?: { __typename?: 'User', id: string, wallet: { __typename?: 'Wallet', available: number }, accessTokens: { __typename?: 'AccessTokenConnection', edges: Array<{ __typename?: 'AccessTokenEdge', node: { __typename?: 'AccessToken', id: string, name?: string | null, durationHours: number, status: AccessTokenStatus, expiresAt: string, lastUsedAt?: string | null } }> } } | null };

export type BuyAccessTokenMutationVariables = Exact<{
  input: PurchaseAccessTokenInput;
}>;


export type BuyAccessTokenMutation = { __typename?: 'Mutation', purchaseAccessToken: { __typename?: 'PurchasedAccessToken', token: string, accessToken: { __typename?: 'AccessToken', id: string } } };

export type RevokeAccessTokenMutationVariables = Exact<{
  id: Scalars['ID']['input'];
}>;


export type RevokeAccessTokenMutation = { __typename?: 'Mutation', revokeAccessToken: { __typename?: 'AccessToken', id: string, status: AccessTokenStatus } };

export type VpsProductsQueryVariables = Exact<{ [key: string]: never; }>;


export type VpsProductsQuery = { __typename?: 'Query', vpsProducts: Array<{ __typename?: 'VpsProduct', id: string, name: string, description: string, vcpu: number, memoryMb: number, diskGb: number, region: string, pricePerHour: number }>, me?: { __typename?: 'User', id: string, wallet: { __typename?: 'Wallet', available: number }, vpsSessions: { __typename?: 'VpsSessionConnection', edges: Array<{ __typename?: 'VpsSessionEdge', node: { __typename?: 'VpsSession', id: string, status: VpsSessionStatus, hours: number, createdAt: string, product?: { __typename?: 'VpsProduct', name: string } | null } }> } } | null };

export type StartVpsMutationVariables = Exact<{
  input: StartVpsSessionInput;
}>;


export type StartVpsMutation = { __typename?: 'Mutation', startVpsSession: { __typename?: 'VpsSession', id: string } };

export type VpsSessionProgressSubscriptionVariables = Exact<{
  id: Scalars['ID']['input'];
  afterSeq?: InputMaybe<Scalars['Int']['input']>;
}>;


export type VpsSessionProgressSubscription = { __typename?: 'Subscription', vpsSessionProgress: { __typename?: 'VpsSessionEvent', seq: number, snapshot: boolean, session: { __typename?: 'VpsSession', id: string, status: VpsSessionStatus, hours: number, endsAt?: string | null, failureReason?: string | null, product?: { __typename?: 'VpsProduct', name: string } | null, connection?: { __typename?: 'VpsConnection', host: string, port: number, username: string, password?: string | null, usesSshKey: boolean } | null }, changedSteps: Array<{ __typename?: 'ChecklistStep', key: string, title: string, position: number, status: StepStatus, message?: string | null, updatedAt?: string | null }> } };

export type StopVpsMutationVariables = Exact<{
  id: Scalars['ID']['input'];
}>;


export type StopVpsMutation = { __typename?: 'Mutation', stopVpsSession: { __typename?: 'VpsSession', id: string, status: VpsSessionStatus } };

export type ExtendVpsMutationVariables = Exact<{
  id: Scalars['ID']['input'];
  hours: Scalars['Int']['input'];
  key?: InputMaybe<Scalars['String']['input']>;
}>;


export type ExtendVpsMutation = { __typename?: 'Mutation', extendVpsSession: { __typename?: 'VpsSession', id: string, hours: number, endsAt?: string | null } };

export type WalletQueryVariables = Exact<{
  first: Scalars['Int']['input'];
  after?: InputMaybe<Scalars['String']['input']>;
  kind?: InputMaybe<TransferKind>;
}>;


export type WalletQuery = { __typename?: 'Query', me?: { __typename?: 'User', id: string, wallet: { __typename?: 'Wallet', balance: number, available: number, transfers: { __typename?: 'TransferConnection', edges: Array<{ __typename?: 'TransferEdge', cursor: string, node: { __typename?: 'Transfer', id: string, amount: number, direction: Direction, kind?: TransferKind | null, status: TransferStatus, counterparty?: SystemAccount | null, balanceAfter: number, createdAt: string } }>, pageInfo: { __typename?: 'PageInfo', hasNextPage: boolean, endCursor?: string | null } } } } | null };

export type WalletChangedSubscriptionVariables = Exact<{ [key: string]: never; }>;


export type WalletChangedSubscription = { __typename?: 'Subscription', walletChanged: { __typename?: 'Wallet', balance: number, available: number } };


export const MeDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"Me"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"me"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"username"}}]}}]}}]} as unknown as DocumentNode<MeQuery, MeQueryVariables>;
export const LogoutDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"Logout"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"logout"}}]}}]} as unknown as DocumentNode<LogoutMutation, LogoutMutationVariables>;
export const MySessionsDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"MySessions"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"me"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"email"}},{"kind":"Field","name":{"kind":"Name","value":"emailVerified"}},{"kind":"Field","name":{"kind":"Name","value":"sessions"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"userAgent"}},{"kind":"Field","name":{"kind":"Name","value":"ip"}},{"kind":"Field","name":{"kind":"Name","value":"lastUsedAt"}},{"kind":"Field","name":{"kind":"Name","value":"current"}}]}}]}}]}}]} as unknown as DocumentNode<MySessionsQuery, MySessionsQueryVariables>;
export const RevokeSessionDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"RevokeSession"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"revokeSession"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}}]}]}}]} as unknown as DocumentNode<RevokeSessionMutation, RevokeSessionMutationVariables>;
export const AdStatusDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"AdStatus"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"adRewardStatus"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"providers"}},{"kind":"Field","name":{"kind":"Name","value":"defaultProvider"}},{"kind":"Field","name":{"kind":"Name","value":"amount"}},{"kind":"Field","name":{"kind":"Name","value":"requiredSeconds"}},{"kind":"Field","name":{"kind":"Name","value":"cooldownSeconds"}},{"kind":"Field","name":{"kind":"Name","value":"todayCount"}},{"kind":"Field","name":{"kind":"Name","value":"dailyCap"}},{"kind":"Field","name":{"kind":"Name","value":"placements"}},{"kind":"Field","name":{"kind":"Name","value":"turnstileSiteKey"}},{"kind":"Field","name":{"kind":"Name","value":"turnstileScriptUrl"}},{"kind":"Field","name":{"kind":"Name","value":"clientSigningRequired"}},{"kind":"Field","name":{"kind":"Name","value":"imaSdkUrl"}}]}}]}}]} as unknown as DocumentNode<AdStatusQuery, AdStatusQueryVariables>;
export const PrepareAdDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"PrepareAd"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"input"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"PrepareAdRewardInput"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"prepareAdReward"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"input"},"value":{"kind":"Variable","name":{"kind":"Name","value":"input"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"provider"}},{"kind":"Field","name":{"kind":"Name","value":"nonce"}},{"kind":"Field","name":{"kind":"Name","value":"ticket"}},{"kind":"Field","name":{"kind":"Name","value":"requiredDurationSec"}},{"kind":"Field","name":{"kind":"Name","value":"monetag"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"zoneId"}},{"kind":"Field","name":{"kind":"Name","value":"scriptUrl"}},{"kind":"Field","name":{"kind":"Name","value":"ymid"}}]}},{"kind":"Field","name":{"kind":"Name","value":"adTagUrl"}}]}}]}}]} as unknown as DocumentNode<PrepareAdMutation, PrepareAdMutationVariables>;
export const CompleteAdDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"CompleteAd"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"input"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"CompleteAdRewardInput"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"completeAdReward"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"input"},"value":{"kind":"Variable","name":{"kind":"Name","value":"input"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"credited"}},{"kind":"Field","name":{"kind":"Name","value":"balance"}}]}}]}}]} as unknown as DocumentNode<CompleteAdMutation, CompleteAdMutationVariables>;
export const EarnWalletDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"subscription","name":{"kind":"Name","value":"EarnWallet"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"walletChanged"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"balance"}}]}}]}}]} as unknown as DocumentNode<EarnWalletSubscription, EarnWalletSubscriptionVariables>;
export const VerifyEmailDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"VerifyEmail"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"token"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"verifyEmail"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"token"},"value":{"kind":"Variable","name":{"kind":"Name","value":"token"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"emailVerified"}}]}}]}}]} as unknown as DocumentNode<VerifyEmailMutation, VerifyEmailMutationVariables>;
export const ResetPasswordDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"ResetPassword"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"token"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"password"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"resetPassword"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"token"},"value":{"kind":"Variable","name":{"kind":"Name","value":"token"}}},{"kind":"Argument","name":{"kind":"Name","value":"newPassword"},"value":{"kind":"Variable","name":{"kind":"Name","value":"password"}}}]}]}}]} as unknown as DocumentNode<ResetPasswordMutation, ResetPasswordMutationVariables>;
export const PlansDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"Plans"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"billingConfigured"}},{"kind":"Field","name":{"kind":"Name","value":"plans"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"name"}},{"kind":"Field","name":{"kind":"Name","value":"tier"}},{"kind":"Field","name":{"kind":"Name","value":"description"}},{"kind":"Field","name":{"kind":"Name","value":"priceCents"}},{"kind":"Field","name":{"kind":"Name","value":"currency"}},{"kind":"Field","name":{"kind":"Name","value":"interval"}},{"kind":"Field","name":{"kind":"Name","value":"coinAllowance"}}]}},{"kind":"Field","name":{"kind":"Name","value":"me"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"subscription"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"active"}},{"kind":"Field","name":{"kind":"Name","value":"cancelAtPeriodEnd"}},{"kind":"Field","name":{"kind":"Name","value":"currentPeriodEnd"}},{"kind":"Field","name":{"kind":"Name","value":"plan"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"name"}}]}}]}},{"kind":"Field","name":{"kind":"Name","value":"payments"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"first"},"value":{"kind":"IntValue","value":"10"}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"edges"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"node"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"amountCents"}},{"kind":"Field","name":{"kind":"Name","value":"currency"}},{"kind":"Field","name":{"kind":"Name","value":"coinAllowance"}},{"kind":"Field","name":{"kind":"Name","value":"hostedInvoiceUrl"}},{"kind":"Field","name":{"kind":"Name","value":"paidAt"}}]}}]}}]}}]}}]}}]} as unknown as DocumentNode<PlansQuery, PlansQueryVariables>;
export const SubscriptionChangedDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"subscription","name":{"kind":"Name","value":"SubscriptionChanged"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"subscriptionChanged"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}}]}}]}}]} as unknown as DocumentNode<SubscriptionChangedSubscription, SubscriptionChangedSubscriptionVariables>;
export const StartCheckoutDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"StartCheckout"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"planId"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"startCheckout"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"planId"},"value":{"kind":"Variable","name":{"kind":"Name","value":"planId"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"url"}}]}}]}}]} as unknown as DocumentNode<StartCheckoutMutation, StartCheckoutMutationVariables>;
export const PreviewPlanChangeDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"PreviewPlanChange"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"planId"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"previewPlanChange"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"planId"},"value":{"kind":"Variable","name":{"kind":"Name","value":"planId"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"amountDueCents"}},{"kind":"Field","name":{"kind":"Name","value":"currency"}},{"kind":"Field","name":{"kind":"Name","value":"lines"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"description"}},{"kind":"Field","name":{"kind":"Name","value":"amountCents"}}]}}]}}]}}]} as unknown as DocumentNode<PreviewPlanChangeQuery, PreviewPlanChangeQueryVariables>;
export const ChangePlanDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"ChangePlan"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"planId"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"changePlan"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"planId"},"value":{"kind":"Variable","name":{"kind":"Name","value":"planId"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"plan"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"name"}}]}}]}}]}}]} as unknown as DocumentNode<ChangePlanMutation, ChangePlanMutationVariables>;
export const CancelSubscriptionDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"CancelSubscription"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"cancelSubscription"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"atPeriodEnd"},"value":{"kind":"BooleanValue","value":true}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"cancelAtPeriodEnd"}}]}}]}}]} as unknown as DocumentNode<CancelSubscriptionMutation, CancelSubscriptionMutationVariables>;
export const ResumeSubscriptionDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"ResumeSubscription"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"resumeSubscription"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"cancelAtPeriodEnd"}}]}}]}}]} as unknown as DocumentNode<ResumeSubscriptionMutation, ResumeSubscriptionMutationVariables>;
export const OpenBillingPortalDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"OpenBillingPortal"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"openBillingPortal"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"url"}}]}}]}}]} as unknown as DocumentNode<OpenBillingPortalMutation, OpenBillingPortalMutationVariables>;
export const LoginDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"Login"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"email"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"password"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"login"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"email"},"value":{"kind":"Variable","name":{"kind":"Name","value":"email"}}},{"kind":"Argument","name":{"kind":"Name","value":"password"},"value":{"kind":"Variable","name":{"kind":"Name","value":"password"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"user"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"username"}}]}}]}}]}}]} as unknown as DocumentNode<LoginMutation, LoginMutationVariables>;
export const RequestLoginCodeDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"RequestLoginCode"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"email"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"requestLoginCode"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"email"},"value":{"kind":"Variable","name":{"kind":"Name","value":"email"}}}]}]}}]} as unknown as DocumentNode<RequestLoginCodeMutation, RequestLoginCodeMutationVariables>;
export const LoginWithCodeDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"LoginWithCode"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"email"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"code"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"loginWithCode"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"email"},"value":{"kind":"Variable","name":{"kind":"Name","value":"email"}}},{"kind":"Argument","name":{"kind":"Name","value":"code"},"value":{"kind":"Variable","name":{"kind":"Name","value":"code"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"user"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"username"}}]}}]}}]}}]} as unknown as DocumentNode<LoginWithCodeMutation, LoginWithCodeMutationVariables>;
export const RequestPasswordResetDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"RequestPasswordReset"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"email"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"requestPasswordReset"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"email"},"value":{"kind":"Variable","name":{"kind":"Name","value":"email"}}}]}]}}]} as unknown as DocumentNode<RequestPasswordResetMutation, RequestPasswordResetMutationVariables>;
export const RegisterDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"Register"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"input"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"RegisterInput"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"register"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"input"},"value":{"kind":"Variable","name":{"kind":"Name","value":"input"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"user"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"username"}}]}}]}}]}}]} as unknown as DocumentNode<RegisterMutation, RegisterMutationVariables>;
export const ProvidersDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"Providers"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"authProviders"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"kind"}},{"kind":"Field","name":{"kind":"Name","value":"name"}},{"kind":"Field","name":{"kind":"Name","value":"loginUrl"}}]}}]}}]} as unknown as DocumentNode<ProvidersQuery, ProvidersQueryVariables>;
export const AccessTokensDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"AccessTokens"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"accessTokenPrices"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"durationHours"}},{"kind":"Field","name":{"kind":"Name","value":"price"}}]}},{"kind":"Field","name":{"kind":"Name","value":"accessProxy"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"configured"}},{"kind":"Field","name":{"kind":"Name","value":"baseUrl"}}]}},{"kind":"Field","name":{"kind":"Name","value":"me"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"wallet"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"available"}}]}},{"kind":"Field","name":{"kind":"Name","value":"accessTokens"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"first"},"value":{"kind":"IntValue","value":"50"}},{"kind":"Argument","name":{"kind":"Name","value":"activeOnly"},"value":{"kind":"BooleanValue","value":false}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"edges"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"node"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"name"}},{"kind":"Field","name":{"kind":"Name","value":"durationHours"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"expiresAt"}},{"kind":"Field","name":{"kind":"Name","value":"lastUsedAt"}}]}}]}}]}}]}}]}}]} as unknown as DocumentNode<AccessTokensQuery, AccessTokensQueryVariables>;
export const BuyAccessTokenDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"BuyAccessToken"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"input"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"PurchaseAccessTokenInput"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"purchaseAccessToken"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"input"},"value":{"kind":"Variable","name":{"kind":"Name","value":"input"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"token"}},{"kind":"Field","name":{"kind":"Name","value":"accessToken"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}}]}}]}}]}}]} as unknown as DocumentNode<BuyAccessTokenMutation, BuyAccessTokenMutationVariables>;
export const RevokeAccessTokenDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"RevokeAccessToken"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"revokeAccessToken"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}}]}}]}}]} as unknown as DocumentNode<RevokeAccessTokenMutation, RevokeAccessTokenMutationVariables>;
export const VpsProductsDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"VpsProducts"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"vpsProducts"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"name"}},{"kind":"Field","name":{"kind":"Name","value":"description"}},{"kind":"Field","name":{"kind":"Name","value":"vcpu"}},{"kind":"Field","name":{"kind":"Name","value":"memoryMb"}},{"kind":"Field","name":{"kind":"Name","value":"diskGb"}},{"kind":"Field","name":{"kind":"Name","value":"region"}},{"kind":"Field","name":{"kind":"Name","value":"pricePerHour"}}]}},{"kind":"Field","name":{"kind":"Name","value":"me"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"wallet"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"available"}}]}},{"kind":"Field","name":{"kind":"Name","value":"vpsSessions"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"first"},"value":{"kind":"IntValue","value":"20"}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"edges"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"node"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"hours"}},{"kind":"Field","name":{"kind":"Name","value":"createdAt"}},{"kind":"Field","name":{"kind":"Name","value":"product"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"name"}}]}}]}}]}}]}}]}}]}}]} as unknown as DocumentNode<VpsProductsQuery, VpsProductsQueryVariables>;
export const StartVpsDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"StartVps"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"input"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"StartVpsSessionInput"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"startVpsSession"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"input"},"value":{"kind":"Variable","name":{"kind":"Name","value":"input"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}}]}}]}}]} as unknown as DocumentNode<StartVpsMutation, StartVpsMutationVariables>;
export const VpsSessionProgressDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"subscription","name":{"kind":"Name","value":"VpsSessionProgress"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"afterSeq"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"Int"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"vpsSessionProgress"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"sessionId"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}},{"kind":"Argument","name":{"kind":"Name","value":"afterSeq"},"value":{"kind":"Variable","name":{"kind":"Name","value":"afterSeq"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"seq"}},{"kind":"Field","name":{"kind":"Name","value":"snapshot"}},{"kind":"Field","name":{"kind":"Name","value":"session"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"hours"}},{"kind":"Field","name":{"kind":"Name","value":"endsAt"}},{"kind":"Field","name":{"kind":"Name","value":"failureReason"}},{"kind":"Field","name":{"kind":"Name","value":"product"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"name"}}]}},{"kind":"Field","name":{"kind":"Name","value":"connection"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"host"}},{"kind":"Field","name":{"kind":"Name","value":"port"}},{"kind":"Field","name":{"kind":"Name","value":"username"}},{"kind":"Field","name":{"kind":"Name","value":"password"}},{"kind":"Field","name":{"kind":"Name","value":"usesSshKey"}}]}}]}},{"kind":"Field","name":{"kind":"Name","value":"changedSteps"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"key"}},{"kind":"Field","name":{"kind":"Name","value":"title"}},{"kind":"Field","name":{"kind":"Name","value":"position"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"message"}},{"kind":"Field","name":{"kind":"Name","value":"updatedAt"}}]}}]}}]}}]} as unknown as DocumentNode<VpsSessionProgressSubscription, VpsSessionProgressSubscriptionVariables>;
export const StopVpsDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"StopVps"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"stopVpsSession"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"status"}}]}}]}}]} as unknown as DocumentNode<StopVpsMutation, StopVpsMutationVariables>;
export const ExtendVpsDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"mutation","name":{"kind":"Name","value":"ExtendVps"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"id"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"hours"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"Int"}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"key"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"extendVpsSession"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"id"},"value":{"kind":"Variable","name":{"kind":"Name","value":"id"}}},{"kind":"Argument","name":{"kind":"Name","value":"hours"},"value":{"kind":"Variable","name":{"kind":"Name","value":"hours"}}},{"kind":"Argument","name":{"kind":"Name","value":"idempotencyKey"},"value":{"kind":"Variable","name":{"kind":"Name","value":"key"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"hours"}},{"kind":"Field","name":{"kind":"Name","value":"endsAt"}}]}}]}}]} as unknown as DocumentNode<ExtendVpsMutation, ExtendVpsMutationVariables>;
export const WalletDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"Wallet"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"first"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"Int"}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"after"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"String"}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"kind"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"TransferKind"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"me"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"wallet"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"balance"}},{"kind":"Field","name":{"kind":"Name","value":"available"}},{"kind":"Field","name":{"kind":"Name","value":"transfers"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"first"},"value":{"kind":"Variable","name":{"kind":"Name","value":"first"}}},{"kind":"Argument","name":{"kind":"Name","value":"after"},"value":{"kind":"Variable","name":{"kind":"Name","value":"after"}}},{"kind":"Argument","name":{"kind":"Name","value":"kind"},"value":{"kind":"Variable","name":{"kind":"Name","value":"kind"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"edges"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"cursor"}},{"kind":"Field","name":{"kind":"Name","value":"node"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"id"}},{"kind":"Field","name":{"kind":"Name","value":"amount"}},{"kind":"Field","name":{"kind":"Name","value":"direction"}},{"kind":"Field","name":{"kind":"Name","value":"kind"}},{"kind":"Field","name":{"kind":"Name","value":"status"}},{"kind":"Field","name":{"kind":"Name","value":"counterparty"}},{"kind":"Field","name":{"kind":"Name","value":"balanceAfter"}},{"kind":"Field","name":{"kind":"Name","value":"createdAt"}}]}}]}},{"kind":"Field","name":{"kind":"Name","value":"pageInfo"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"hasNextPage"}},{"kind":"Field","name":{"kind":"Name","value":"endCursor"}}]}}]}}]}}]}}]}}]} as unknown as DocumentNode<WalletQuery, WalletQueryVariables>;
export const WalletChangedDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"subscription","name":{"kind":"Name","value":"WalletChanged"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"walletChanged"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"balance"}},{"kind":"Field","name":{"kind":"Name","value":"available"}}]}}]}}]} as unknown as DocumentNode<WalletChangedSubscription, WalletChangedSubscriptionVariables>;