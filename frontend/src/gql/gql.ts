/* eslint-disable */
import * as types from './graphql';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "\n  query Me {\n    me {\n      id\n      username\n    }\n  }\n": typeof types.MeDocument,
    "\n  mutation Logout {\n    logout\n  }\n": typeof types.LogoutDocument,
    "\n  query MySessions {\n    me {\n      id\n      email\n      emailVerified\n      sessions {\n        id\n        userAgent\n        ip\n        lastUsedAt\n        current\n      }\n    }\n  }\n": typeof types.MySessionsDocument,
    "\n  mutation RevokeSession($id: ID!) {\n    revokeSession(id: $id)\n  }\n": typeof types.RevokeSessionDocument,
    "\n  query AdStatus {\n    adRewardStatus {\n      providers\n      defaultProvider\n      amount\n      requiredSeconds\n      cooldownSeconds\n      todayCount\n      dailyCap\n      placements\n      turnstileSiteKey\n      turnstileScriptUrl\n      clientSigningRequired\n      imaSdkUrl\n    }\n  }\n": typeof types.AdStatusDocument,
    "\n  mutation PrepareAd($input: PrepareAdRewardInput!) {\n    prepareAdReward(input: $input) {\n      provider\n      nonce\n      ticket\n      requiredDurationSec\n      monetag {\n        zoneId\n        scriptUrl\n        ymid\n      }\n      adTagUrl\n    }\n  }\n": typeof types.PrepareAdDocument,
    "\n  mutation CompleteAd($input: CompleteAdRewardInput!) {\n    completeAdReward(input: $input) {\n      status\n      credited\n      balance\n    }\n  }\n": typeof types.CompleteAdDocument,
    "\n  subscription EarnWallet {\n    walletChanged {\n      balance\n    }\n  }\n": typeof types.EarnWalletDocument,
    "\n  mutation VerifyEmail($token: String!) {\n    verifyEmail(token: $token) {\n      id\n      emailVerified\n    }\n  }\n": typeof types.VerifyEmailDocument,
    "\n  mutation ResetPassword($token: String!, $password: String!) {\n    resetPassword(token: $token, newPassword: $password)\n  }\n": typeof types.ResetPasswordDocument,
    "\n  query Plans {\n    billingConfigured\n    plans {\n      id\n      name\n      tier\n      description\n      priceCents\n      currency\n      interval\n      coinAllowance\n    }\n    me {\n      id\n      subscription {\n        id\n        status\n        active\n        cancelAtPeriodEnd\n        currentPeriodEnd\n        plan {\n          id\n          name\n        }\n      }\n      payments(first: 10) {\n        edges {\n          node {\n            id\n            amountCents\n            currency\n            coinAllowance\n            hostedInvoiceUrl\n            paidAt\n          }\n        }\n      }\n    }\n  }\n": typeof types.PlansDocument,
    "\n  subscription SubscriptionChanged {\n    subscriptionChanged {\n      id\n      status\n    }\n  }\n": typeof types.SubscriptionChangedDocument,
    "\n  mutation StartCheckout($planId: ID!) {\n    startCheckout(planId: $planId) {\n      url\n    }\n  }\n": typeof types.StartCheckoutDocument,
    "\n  query PreviewPlanChange($planId: ID!) {\n    previewPlanChange(planId: $planId) {\n      amountDueCents\n      currency\n      lines {\n        description\n        amountCents\n      }\n    }\n  }\n": typeof types.PreviewPlanChangeDocument,
    "\n  mutation ChangePlan($planId: ID!) {\n    changePlan(planId: $planId) {\n      id\n      plan {\n        id\n        name\n      }\n    }\n  }\n": typeof types.ChangePlanDocument,
    "\n  mutation CancelSubscription {\n    cancelSubscription(atPeriodEnd: true) {\n      id\n      cancelAtPeriodEnd\n    }\n  }\n": typeof types.CancelSubscriptionDocument,
    "\n  mutation ResumeSubscription {\n    resumeSubscription {\n      id\n      cancelAtPeriodEnd\n    }\n  }\n": typeof types.ResumeSubscriptionDocument,
    "\n  mutation OpenBillingPortal {\n    openBillingPortal {\n      url\n    }\n  }\n": typeof types.OpenBillingPortalDocument,
    "\n  mutation Login($email: String!, $password: String!) {\n    login(email: $email, password: $password) {\n      user {\n        id\n        username\n      }\n    }\n  }\n": typeof types.LoginDocument,
    "\n  mutation RequestLoginCode($email: String!) {\n    requestLoginCode(email: $email)\n  }\n": typeof types.RequestLoginCodeDocument,
    "\n  mutation LoginWithCode($email: String!, $code: String!) {\n    loginWithCode(email: $email, code: $code) {\n      user {\n        id\n        username\n      }\n    }\n  }\n": typeof types.LoginWithCodeDocument,
    "\n  mutation RequestPasswordReset($email: String!) {\n    requestPasswordReset(email: $email)\n  }\n": typeof types.RequestPasswordResetDocument,
    "\n  mutation Register($input: RegisterInput!) {\n    register(input: $input) {\n      user {\n        id\n        username\n      }\n    }\n  }\n": typeof types.RegisterDocument,
    "\n  query Providers {\n    authProviders {\n      kind\n      name\n      loginUrl\n    }\n  }\n": typeof types.ProvidersDocument,
    "\n  query AccessTokens {\n    accessTokenPrices {\n      durationHours\n      price\n    }\n    accessProxy {\n      configured\n      baseUrl\n    }\n    me {\n      id\n      wallet {\n        available\n      }\n      accessTokens(first: 50, activeOnly: false) {\n        edges {\n          node {\n            id\n            name\n            durationHours\n            status\n            expiresAt\n            lastUsedAt\n          }\n        }\n      }\n    }\n  }\n": typeof types.AccessTokensDocument,
    "\n  mutation BuyAccessToken($input: PurchaseAccessTokenInput!) {\n    purchaseAccessToken(input: $input) {\n      token\n      accessToken {\n        id\n      }\n    }\n  }\n": typeof types.BuyAccessTokenDocument,
    "\n  mutation RevokeAccessToken($id: ID!) {\n    revokeAccessToken(id: $id) {\n      id\n      status\n    }\n  }\n": typeof types.RevokeAccessTokenDocument,
    "\n  query VpsProducts {\n    vpsProducts {\n      id\n      name\n      description\n      vcpu\n      memoryMb\n      diskGb\n      region\n      pricePerHour\n    }\n    me {\n      id\n      wallet {\n        available\n      }\n      vpsSessions(first: 20) {\n        edges {\n          node {\n            id\n            status\n            hours\n            createdAt\n            product {\n              name\n            }\n          }\n        }\n      }\n    }\n  }\n": typeof types.VpsProductsDocument,
    "\n  mutation StartVps($input: StartVpsSessionInput!) {\n    startVpsSession(input: $input) {\n      id\n    }\n  }\n": typeof types.StartVpsDocument,
    "\n  subscription VpsSessionProgress($id: ID!, $afterSeq: Int) {\n    vpsSessionProgress(sessionId: $id, afterSeq: $afterSeq) {\n      seq\n      snapshot\n      session {\n        id\n        status\n        hours\n        endsAt\n        failureReason\n        product {\n          name\n        }\n        connection {\n          host\n          port\n          username\n          password\n          usesSshKey\n        }\n      }\n      changedSteps {\n        key\n        title\n        position\n        status\n        message\n        updatedAt\n      }\n    }\n  }\n": typeof types.VpsSessionProgressDocument,
    "\n  mutation StopVps($id: ID!) {\n    stopVpsSession(id: $id) {\n      id\n      status\n    }\n  }\n": typeof types.StopVpsDocument,
    "\n  mutation ExtendVps($id: ID!, $hours: Int!, $key: String) {\n    extendVpsSession(id: $id, hours: $hours, idempotencyKey: $key) {\n      id\n      hours\n      endsAt\n    }\n  }\n": typeof types.ExtendVpsDocument,
    "\n  query Wallet($first: Int!, $after: String, $kind: TransferKind) {\n    me {\n      id\n      wallet {\n        balance\n        available\n        transfers(first: $first, after: $after, kind: $kind) {\n          edges {\n            cursor\n            node {\n              id\n              amount\n              direction\n              kind\n              status\n              counterparty\n              balanceAfter\n              createdAt\n            }\n          }\n          pageInfo {\n            hasNextPage\n            endCursor\n          }\n        }\n      }\n    }\n  }\n": typeof types.WalletDocument,
    "\n  subscription WalletChanged {\n    walletChanged {\n      balance\n      available\n    }\n  }\n": typeof types.WalletChangedDocument,
};
const documents: Documents = {
    "\n  query Me {\n    me {\n      id\n      username\n    }\n  }\n": types.MeDocument,
    "\n  mutation Logout {\n    logout\n  }\n": types.LogoutDocument,
    "\n  query MySessions {\n    me {\n      id\n      email\n      emailVerified\n      sessions {\n        id\n        userAgent\n        ip\n        lastUsedAt\n        current\n      }\n    }\n  }\n": types.MySessionsDocument,
    "\n  mutation RevokeSession($id: ID!) {\n    revokeSession(id: $id)\n  }\n": types.RevokeSessionDocument,
    "\n  query AdStatus {\n    adRewardStatus {\n      providers\n      defaultProvider\n      amount\n      requiredSeconds\n      cooldownSeconds\n      todayCount\n      dailyCap\n      placements\n      turnstileSiteKey\n      turnstileScriptUrl\n      clientSigningRequired\n      imaSdkUrl\n    }\n  }\n": types.AdStatusDocument,
    "\n  mutation PrepareAd($input: PrepareAdRewardInput!) {\n    prepareAdReward(input: $input) {\n      provider\n      nonce\n      ticket\n      requiredDurationSec\n      monetag {\n        zoneId\n        scriptUrl\n        ymid\n      }\n      adTagUrl\n    }\n  }\n": types.PrepareAdDocument,
    "\n  mutation CompleteAd($input: CompleteAdRewardInput!) {\n    completeAdReward(input: $input) {\n      status\n      credited\n      balance\n    }\n  }\n": types.CompleteAdDocument,
    "\n  subscription EarnWallet {\n    walletChanged {\n      balance\n    }\n  }\n": types.EarnWalletDocument,
    "\n  mutation VerifyEmail($token: String!) {\n    verifyEmail(token: $token) {\n      id\n      emailVerified\n    }\n  }\n": types.VerifyEmailDocument,
    "\n  mutation ResetPassword($token: String!, $password: String!) {\n    resetPassword(token: $token, newPassword: $password)\n  }\n": types.ResetPasswordDocument,
    "\n  query Plans {\n    billingConfigured\n    plans {\n      id\n      name\n      tier\n      description\n      priceCents\n      currency\n      interval\n      coinAllowance\n    }\n    me {\n      id\n      subscription {\n        id\n        status\n        active\n        cancelAtPeriodEnd\n        currentPeriodEnd\n        plan {\n          id\n          name\n        }\n      }\n      payments(first: 10) {\n        edges {\n          node {\n            id\n            amountCents\n            currency\n            coinAllowance\n            hostedInvoiceUrl\n            paidAt\n          }\n        }\n      }\n    }\n  }\n": types.PlansDocument,
    "\n  subscription SubscriptionChanged {\n    subscriptionChanged {\n      id\n      status\n    }\n  }\n": types.SubscriptionChangedDocument,
    "\n  mutation StartCheckout($planId: ID!) {\n    startCheckout(planId: $planId) {\n      url\n    }\n  }\n": types.StartCheckoutDocument,
    "\n  query PreviewPlanChange($planId: ID!) {\n    previewPlanChange(planId: $planId) {\n      amountDueCents\n      currency\n      lines {\n        description\n        amountCents\n      }\n    }\n  }\n": types.PreviewPlanChangeDocument,
    "\n  mutation ChangePlan($planId: ID!) {\n    changePlan(planId: $planId) {\n      id\n      plan {\n        id\n        name\n      }\n    }\n  }\n": types.ChangePlanDocument,
    "\n  mutation CancelSubscription {\n    cancelSubscription(atPeriodEnd: true) {\n      id\n      cancelAtPeriodEnd\n    }\n  }\n": types.CancelSubscriptionDocument,
    "\n  mutation ResumeSubscription {\n    resumeSubscription {\n      id\n      cancelAtPeriodEnd\n    }\n  }\n": types.ResumeSubscriptionDocument,
    "\n  mutation OpenBillingPortal {\n    openBillingPortal {\n      url\n    }\n  }\n": types.OpenBillingPortalDocument,
    "\n  mutation Login($email: String!, $password: String!) {\n    login(email: $email, password: $password) {\n      user {\n        id\n        username\n      }\n    }\n  }\n": types.LoginDocument,
    "\n  mutation RequestLoginCode($email: String!) {\n    requestLoginCode(email: $email)\n  }\n": types.RequestLoginCodeDocument,
    "\n  mutation LoginWithCode($email: String!, $code: String!) {\n    loginWithCode(email: $email, code: $code) {\n      user {\n        id\n        username\n      }\n    }\n  }\n": types.LoginWithCodeDocument,
    "\n  mutation RequestPasswordReset($email: String!) {\n    requestPasswordReset(email: $email)\n  }\n": types.RequestPasswordResetDocument,
    "\n  mutation Register($input: RegisterInput!) {\n    register(input: $input) {\n      user {\n        id\n        username\n      }\n    }\n  }\n": types.RegisterDocument,
    "\n  query Providers {\n    authProviders {\n      kind\n      name\n      loginUrl\n    }\n  }\n": types.ProvidersDocument,
    "\n  query AccessTokens {\n    accessTokenPrices {\n      durationHours\n      price\n    }\n    accessProxy {\n      configured\n      baseUrl\n    }\n    me {\n      id\n      wallet {\n        available\n      }\n      accessTokens(first: 50, activeOnly: false) {\n        edges {\n          node {\n            id\n            name\n            durationHours\n            status\n            expiresAt\n            lastUsedAt\n          }\n        }\n      }\n    }\n  }\n": types.AccessTokensDocument,
    "\n  mutation BuyAccessToken($input: PurchaseAccessTokenInput!) {\n    purchaseAccessToken(input: $input) {\n      token\n      accessToken {\n        id\n      }\n    }\n  }\n": types.BuyAccessTokenDocument,
    "\n  mutation RevokeAccessToken($id: ID!) {\n    revokeAccessToken(id: $id) {\n      id\n      status\n    }\n  }\n": types.RevokeAccessTokenDocument,
    "\n  query VpsProducts {\n    vpsProducts {\n      id\n      name\n      description\n      vcpu\n      memoryMb\n      diskGb\n      region\n      pricePerHour\n    }\n    me {\n      id\n      wallet {\n        available\n      }\n      vpsSessions(first: 20) {\n        edges {\n          node {\n            id\n            status\n            hours\n            createdAt\n            product {\n              name\n            }\n          }\n        }\n      }\n    }\n  }\n": types.VpsProductsDocument,
    "\n  mutation StartVps($input: StartVpsSessionInput!) {\n    startVpsSession(input: $input) {\n      id\n    }\n  }\n": types.StartVpsDocument,
    "\n  subscription VpsSessionProgress($id: ID!, $afterSeq: Int) {\n    vpsSessionProgress(sessionId: $id, afterSeq: $afterSeq) {\n      seq\n      snapshot\n      session {\n        id\n        status\n        hours\n        endsAt\n        failureReason\n        product {\n          name\n        }\n        connection {\n          host\n          port\n          username\n          password\n          usesSshKey\n        }\n      }\n      changedSteps {\n        key\n        title\n        position\n        status\n        message\n        updatedAt\n      }\n    }\n  }\n": types.VpsSessionProgressDocument,
    "\n  mutation StopVps($id: ID!) {\n    stopVpsSession(id: $id) {\n      id\n      status\n    }\n  }\n": types.StopVpsDocument,
    "\n  mutation ExtendVps($id: ID!, $hours: Int!, $key: String) {\n    extendVpsSession(id: $id, hours: $hours, idempotencyKey: $key) {\n      id\n      hours\n      endsAt\n    }\n  }\n": types.ExtendVpsDocument,
    "\n  query Wallet($first: Int!, $after: String, $kind: TransferKind) {\n    me {\n      id\n      wallet {\n        balance\n        available\n        transfers(first: $first, after: $after, kind: $kind) {\n          edges {\n            cursor\n            node {\n              id\n              amount\n              direction\n              kind\n              status\n              counterparty\n              balanceAfter\n              createdAt\n            }\n          }\n          pageInfo {\n            hasNextPage\n            endCursor\n          }\n        }\n      }\n    }\n  }\n": types.WalletDocument,
    "\n  subscription WalletChanged {\n    walletChanged {\n      balance\n      available\n    }\n  }\n": types.WalletChangedDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Me {\n    me {\n      id\n      username\n    }\n  }\n"): (typeof documents)["\n  query Me {\n    me {\n      id\n      username\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation Logout {\n    logout\n  }\n"): (typeof documents)["\n  mutation Logout {\n    logout\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query MySessions {\n    me {\n      id\n      email\n      emailVerified\n      sessions {\n        id\n        userAgent\n        ip\n        lastUsedAt\n        current\n      }\n    }\n  }\n"): (typeof documents)["\n  query MySessions {\n    me {\n      id\n      email\n      emailVerified\n      sessions {\n        id\n        userAgent\n        ip\n        lastUsedAt\n        current\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation RevokeSession($id: ID!) {\n    revokeSession(id: $id)\n  }\n"): (typeof documents)["\n  mutation RevokeSession($id: ID!) {\n    revokeSession(id: $id)\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query AdStatus {\n    adRewardStatus {\n      providers\n      defaultProvider\n      amount\n      requiredSeconds\n      cooldownSeconds\n      todayCount\n      dailyCap\n      placements\n      turnstileSiteKey\n      turnstileScriptUrl\n      clientSigningRequired\n      imaSdkUrl\n    }\n  }\n"): (typeof documents)["\n  query AdStatus {\n    adRewardStatus {\n      providers\n      defaultProvider\n      amount\n      requiredSeconds\n      cooldownSeconds\n      todayCount\n      dailyCap\n      placements\n      turnstileSiteKey\n      turnstileScriptUrl\n      clientSigningRequired\n      imaSdkUrl\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation PrepareAd($input: PrepareAdRewardInput!) {\n    prepareAdReward(input: $input) {\n      provider\n      nonce\n      ticket\n      requiredDurationSec\n      monetag {\n        zoneId\n        scriptUrl\n        ymid\n      }\n      adTagUrl\n    }\n  }\n"): (typeof documents)["\n  mutation PrepareAd($input: PrepareAdRewardInput!) {\n    prepareAdReward(input: $input) {\n      provider\n      nonce\n      ticket\n      requiredDurationSec\n      monetag {\n        zoneId\n        scriptUrl\n        ymid\n      }\n      adTagUrl\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CompleteAd($input: CompleteAdRewardInput!) {\n    completeAdReward(input: $input) {\n      status\n      credited\n      balance\n    }\n  }\n"): (typeof documents)["\n  mutation CompleteAd($input: CompleteAdRewardInput!) {\n    completeAdReward(input: $input) {\n      status\n      credited\n      balance\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription EarnWallet {\n    walletChanged {\n      balance\n    }\n  }\n"): (typeof documents)["\n  subscription EarnWallet {\n    walletChanged {\n      balance\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation VerifyEmail($token: String!) {\n    verifyEmail(token: $token) {\n      id\n      emailVerified\n    }\n  }\n"): (typeof documents)["\n  mutation VerifyEmail($token: String!) {\n    verifyEmail(token: $token) {\n      id\n      emailVerified\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ResetPassword($token: String!, $password: String!) {\n    resetPassword(token: $token, newPassword: $password)\n  }\n"): (typeof documents)["\n  mutation ResetPassword($token: String!, $password: String!) {\n    resetPassword(token: $token, newPassword: $password)\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Plans {\n    billingConfigured\n    plans {\n      id\n      name\n      tier\n      description\n      priceCents\n      currency\n      interval\n      coinAllowance\n    }\n    me {\n      id\n      subscription {\n        id\n        status\n        active\n        cancelAtPeriodEnd\n        currentPeriodEnd\n        plan {\n          id\n          name\n        }\n      }\n      payments(first: 10) {\n        edges {\n          node {\n            id\n            amountCents\n            currency\n            coinAllowance\n            hostedInvoiceUrl\n            paidAt\n          }\n        }\n      }\n    }\n  }\n"): (typeof documents)["\n  query Plans {\n    billingConfigured\n    plans {\n      id\n      name\n      tier\n      description\n      priceCents\n      currency\n      interval\n      coinAllowance\n    }\n    me {\n      id\n      subscription {\n        id\n        status\n        active\n        cancelAtPeriodEnd\n        currentPeriodEnd\n        plan {\n          id\n          name\n        }\n      }\n      payments(first: 10) {\n        edges {\n          node {\n            id\n            amountCents\n            currency\n            coinAllowance\n            hostedInvoiceUrl\n            paidAt\n          }\n        }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription SubscriptionChanged {\n    subscriptionChanged {\n      id\n      status\n    }\n  }\n"): (typeof documents)["\n  subscription SubscriptionChanged {\n    subscriptionChanged {\n      id\n      status\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation StartCheckout($planId: ID!) {\n    startCheckout(planId: $planId) {\n      url\n    }\n  }\n"): (typeof documents)["\n  mutation StartCheckout($planId: ID!) {\n    startCheckout(planId: $planId) {\n      url\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query PreviewPlanChange($planId: ID!) {\n    previewPlanChange(planId: $planId) {\n      amountDueCents\n      currency\n      lines {\n        description\n        amountCents\n      }\n    }\n  }\n"): (typeof documents)["\n  query PreviewPlanChange($planId: ID!) {\n    previewPlanChange(planId: $planId) {\n      amountDueCents\n      currency\n      lines {\n        description\n        amountCents\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ChangePlan($planId: ID!) {\n    changePlan(planId: $planId) {\n      id\n      plan {\n        id\n        name\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation ChangePlan($planId: ID!) {\n    changePlan(planId: $planId) {\n      id\n      plan {\n        id\n        name\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation CancelSubscription {\n    cancelSubscription(atPeriodEnd: true) {\n      id\n      cancelAtPeriodEnd\n    }\n  }\n"): (typeof documents)["\n  mutation CancelSubscription {\n    cancelSubscription(atPeriodEnd: true) {\n      id\n      cancelAtPeriodEnd\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ResumeSubscription {\n    resumeSubscription {\n      id\n      cancelAtPeriodEnd\n    }\n  }\n"): (typeof documents)["\n  mutation ResumeSubscription {\n    resumeSubscription {\n      id\n      cancelAtPeriodEnd\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation OpenBillingPortal {\n    openBillingPortal {\n      url\n    }\n  }\n"): (typeof documents)["\n  mutation OpenBillingPortal {\n    openBillingPortal {\n      url\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation Login($email: String!, $password: String!) {\n    login(email: $email, password: $password) {\n      user {\n        id\n        username\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation Login($email: String!, $password: String!) {\n    login(email: $email, password: $password) {\n      user {\n        id\n        username\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation RequestLoginCode($email: String!) {\n    requestLoginCode(email: $email)\n  }\n"): (typeof documents)["\n  mutation RequestLoginCode($email: String!) {\n    requestLoginCode(email: $email)\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation LoginWithCode($email: String!, $code: String!) {\n    loginWithCode(email: $email, code: $code) {\n      user {\n        id\n        username\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation LoginWithCode($email: String!, $code: String!) {\n    loginWithCode(email: $email, code: $code) {\n      user {\n        id\n        username\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation RequestPasswordReset($email: String!) {\n    requestPasswordReset(email: $email)\n  }\n"): (typeof documents)["\n  mutation RequestPasswordReset($email: String!) {\n    requestPasswordReset(email: $email)\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation Register($input: RegisterInput!) {\n    register(input: $input) {\n      user {\n        id\n        username\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation Register($input: RegisterInput!) {\n    register(input: $input) {\n      user {\n        id\n        username\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Providers {\n    authProviders {\n      kind\n      name\n      loginUrl\n    }\n  }\n"): (typeof documents)["\n  query Providers {\n    authProviders {\n      kind\n      name\n      loginUrl\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query AccessTokens {\n    accessTokenPrices {\n      durationHours\n      price\n    }\n    accessProxy {\n      configured\n      baseUrl\n    }\n    me {\n      id\n      wallet {\n        available\n      }\n      accessTokens(first: 50, activeOnly: false) {\n        edges {\n          node {\n            id\n            name\n            durationHours\n            status\n            expiresAt\n            lastUsedAt\n          }\n        }\n      }\n    }\n  }\n"): (typeof documents)["\n  query AccessTokens {\n    accessTokenPrices {\n      durationHours\n      price\n    }\n    accessProxy {\n      configured\n      baseUrl\n    }\n    me {\n      id\n      wallet {\n        available\n      }\n      accessTokens(first: 50, activeOnly: false) {\n        edges {\n          node {\n            id\n            name\n            durationHours\n            status\n            expiresAt\n            lastUsedAt\n          }\n        }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation BuyAccessToken($input: PurchaseAccessTokenInput!) {\n    purchaseAccessToken(input: $input) {\n      token\n      accessToken {\n        id\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation BuyAccessToken($input: PurchaseAccessTokenInput!) {\n    purchaseAccessToken(input: $input) {\n      token\n      accessToken {\n        id\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation RevokeAccessToken($id: ID!) {\n    revokeAccessToken(id: $id) {\n      id\n      status\n    }\n  }\n"): (typeof documents)["\n  mutation RevokeAccessToken($id: ID!) {\n    revokeAccessToken(id: $id) {\n      id\n      status\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query VpsProducts {\n    vpsProducts {\n      id\n      name\n      description\n      vcpu\n      memoryMb\n      diskGb\n      region\n      pricePerHour\n    }\n    me {\n      id\n      wallet {\n        available\n      }\n      vpsSessions(first: 20) {\n        edges {\n          node {\n            id\n            status\n            hours\n            createdAt\n            product {\n              name\n            }\n          }\n        }\n      }\n    }\n  }\n"): (typeof documents)["\n  query VpsProducts {\n    vpsProducts {\n      id\n      name\n      description\n      vcpu\n      memoryMb\n      diskGb\n      region\n      pricePerHour\n    }\n    me {\n      id\n      wallet {\n        available\n      }\n      vpsSessions(first: 20) {\n        edges {\n          node {\n            id\n            status\n            hours\n            createdAt\n            product {\n              name\n            }\n          }\n        }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation StartVps($input: StartVpsSessionInput!) {\n    startVpsSession(input: $input) {\n      id\n    }\n  }\n"): (typeof documents)["\n  mutation StartVps($input: StartVpsSessionInput!) {\n    startVpsSession(input: $input) {\n      id\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription VpsSessionProgress($id: ID!, $afterSeq: Int) {\n    vpsSessionProgress(sessionId: $id, afterSeq: $afterSeq) {\n      seq\n      snapshot\n      session {\n        id\n        status\n        hours\n        endsAt\n        failureReason\n        product {\n          name\n        }\n        connection {\n          host\n          port\n          username\n          password\n          usesSshKey\n        }\n      }\n      changedSteps {\n        key\n        title\n        position\n        status\n        message\n        updatedAt\n      }\n    }\n  }\n"): (typeof documents)["\n  subscription VpsSessionProgress($id: ID!, $afterSeq: Int) {\n    vpsSessionProgress(sessionId: $id, afterSeq: $afterSeq) {\n      seq\n      snapshot\n      session {\n        id\n        status\n        hours\n        endsAt\n        failureReason\n        product {\n          name\n        }\n        connection {\n          host\n          port\n          username\n          password\n          usesSshKey\n        }\n      }\n      changedSteps {\n        key\n        title\n        position\n        status\n        message\n        updatedAt\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation StopVps($id: ID!) {\n    stopVpsSession(id: $id) {\n      id\n      status\n    }\n  }\n"): (typeof documents)["\n  mutation StopVps($id: ID!) {\n    stopVpsSession(id: $id) {\n      id\n      status\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ExtendVps($id: ID!, $hours: Int!, $key: String) {\n    extendVpsSession(id: $id, hours: $hours, idempotencyKey: $key) {\n      id\n      hours\n      endsAt\n    }\n  }\n"): (typeof documents)["\n  mutation ExtendVps($id: ID!, $hours: Int!, $key: String) {\n    extendVpsSession(id: $id, hours: $hours, idempotencyKey: $key) {\n      id\n      hours\n      endsAt\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Wallet($first: Int!, $after: String, $kind: TransferKind) {\n    me {\n      id\n      wallet {\n        balance\n        available\n        transfers(first: $first, after: $after, kind: $kind) {\n          edges {\n            cursor\n            node {\n              id\n              amount\n              direction\n              kind\n              status\n              counterparty\n              balanceAfter\n              createdAt\n            }\n          }\n          pageInfo {\n            hasNextPage\n            endCursor\n          }\n        }\n      }\n    }\n  }\n"): (typeof documents)["\n  query Wallet($first: Int!, $after: String, $kind: TransferKind) {\n    me {\n      id\n      wallet {\n        balance\n        available\n        transfers(first: $first, after: $after, kind: $kind) {\n          edges {\n            cursor\n            node {\n              id\n              amount\n              direction\n              kind\n              status\n              counterparty\n              balanceAfter\n              createdAt\n            }\n          }\n          pageInfo {\n            hasNextPage\n            endCursor\n          }\n        }\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription WalletChanged {\n    walletChanged {\n      balance\n      available\n    }\n  }\n"): (typeof documents)["\n  subscription WalletChanged {\n    walletChanged {\n      balance\n      available\n    }\n  }\n"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;