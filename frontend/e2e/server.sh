#!/usr/bin/env bash
# Starts the server the browser tests use: a fresh SQLite database, the built app
# (frontend/dist), dev ad fakes with short ads, a local Stripe (tessera-fakes) on the next
# port, and an SMTP server on the one after, whose mail the tests read over HTTP on the
# port after that (GET /messages), and the Google (OpenID Connect), Discord and GitHub
# sign-in fakes on the three after that, and Turnstile (siteverify and a widget stand-in)
# on the next. Ads need the client signature: the app must be built with `npm run build:e2e`
# (.env.e2e carries the same key). Every test signs in from 127.0.0.1, so the per-address
# sign-in limit is lifted; the per-email one (5 a minute) stays. Access tokens last 30 s (the least allowed), so
# the refresh path is exercised. E2E_SPA_DIR names another app folder (CI names a missing
# one, so the app built into the binary with `embedded-spa` is what the browser gets). Build all first (cargo build -p tessera -p tessera-fakes --bins; npm run build).
set -euo pipefail
PORT="${1:-18480}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${TESSERA_BIN:-$HERE/../target/debug/tessera}"
FAKES="${TESSERA_FAKES_BIN:-$HERE/../target/debug/tessera-fakes}"
STRIPE_PORT=$((PORT + 1))
SMTP_PORT=$((PORT + 2))
INBOX_PORT=$((PORT + 3))
GOOGLE_PORT=$((PORT + 4))
DISCORD_PORT=$((PORT + 5))
GITHUB_PORT=$((PORT + 6))
TURNSTILE_PORT=$((PORT + 7))
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export LISTEN_ADDR="127.0.0.1:$PORT" PUBLIC_URL="http://127.0.0.1:$PORT" \
  DATABASE_URL="sqlite://$WORK/tessera.db?mode=rwc" \
  DATA_DIR="$WORK/data" \
  SPA_DIR="${E2E_SPA_DIR:-$HERE/dist}" \
  ADS_DEV_FAKES=true ADS_DEV_AD_SECONDS=1 REQUIRED_DURATION=2 MIN_INTERVAL=0 \
  EMBEDDED_WORKER=true SIMULATED_STEP_MS=300 ADMIN_EMAILS=e2e-admin@example.com MAIL_TRANSPORT=smtp SMTP_URL="smtp://127.0.0.1:$SMTP_PORT" \
  ARGON2_MEMORY_KIB=64 ARGON2_ITERATIONS=1 RUST_LOG=warn ACCESS_TOKEN_TTL=30s \
  LOGIN_RATE_LIMIT_PER_IP=1000 \
  STRIPE_SECRET_KEY=sk_test_e2e STRIPE_WEBHOOK_SECRET=whsec_e2e \
  STRIPE_API_BASE="http://127.0.0.1:$STRIPE_PORT/" \
  GOOGLE_CLIENT_ID=e2e-google GOOGLE_CLIENT_SECRET=e2e-google-secret GOOGLE_ISSUER_URL="http://127.0.0.1:$GOOGLE_PORT" \
  DISCORD_CLIENT_ID=e2e-discord DISCORD_CLIENT_SECRET=e2e-discord-secret DISCORD_URL="http://127.0.0.1:$DISCORD_PORT" \
  GITHUB_CLIENT_ID=e2e-github GITHUB_CLIENT_SECRET=e2e-github-secret \
  GITHUB_URL="http://127.0.0.1:$GITHUB_PORT" GITHUB_API_URL="http://127.0.0.1:$GITHUB_PORT" \
  TURNSTILE_SITE_KEY=e2e-site-key TURNSTILE_SECRET_KEY=e2e-turnstile-secret \
  TURNSTILE_VERIFY_URL="http://127.0.0.1:$TURNSTILE_PORT/turnstile/v0/siteverify" \
  TURNSTILE_SCRIPT_URL="http://127.0.0.1:$TURNSTILE_PORT/turnstile/v0/api.js" \
  CLIENT_SIGNING_SECRET=e2e-client-secret
unset REDIS_URL TEST_DATABASE_URL
"$FAKES" stripe --listen "127.0.0.1:$STRIPE_PORT" \
  --webhook-url "http://127.0.0.1:$PORT/webhooks/stripe" --webhook-secret whsec_e2e >/dev/null &
STRIPE=$!
"$FAKES" smtp --listen "127.0.0.1:$SMTP_PORT" --inbox "127.0.0.1:$INBOX_PORT" >/dev/null &
SMTP=$!
"$FAKES" google --listen "127.0.0.1:$GOOGLE_PORT" --client-id e2e-google --client-secret e2e-google-secret >/dev/null &
GOOGLE=$!
"$FAKES" discord --listen "127.0.0.1:$DISCORD_PORT" --client-id e2e-discord --client-secret e2e-discord-secret >/dev/null &
DISCORD=$!
"$FAKES" github --listen "127.0.0.1:$GITHUB_PORT" --client-id e2e-github --client-secret e2e-github-secret >/dev/null &
GITHUB=$!
"$FAKES" turnstile --listen "127.0.0.1:$TURNSTILE_PORT" --secret e2e-turnstile-secret --hostname 127.0.0.1 >/dev/null &
TURNSTILE=$!
"$BIN" serve &
SERVER=$!
FAKES_PIDS="$STRIPE $SMTP $GOOGLE $DISCORD $GITHUB $TURNSTILE"
trap 'kill $SERVER $FAKES_PIDS 2>/dev/null; wait $SERVER $FAKES_PIDS 2>/dev/null; rm -rf "$WORK"' EXIT INT TERM
wait $SERVER
