-- The transaction wallet::transfer runs for one 1-coin transfer between two users with a
-- fresh idempotency key, as plain SQL for pgbench (bench/ledger.sh). Same statements, same
-- order: look the key up, debit and credit in a consistent lock order (conditional
-- UPDATE ... RETURNING), insert the transfer with the balances left, commit.
-- Accounts are found through bench_accounts(n, id), an index lookup inside each statement.
\set a random(1, :users)
\set b random(1, :users)
\if :a = :b
\set b (:a % :users) + 1
\endif
\set k random(1, 9000000000000000000)
BEGIN;
SELECT * FROM transfers WHERE idempotency_key = 'pgb-' || :client_id || '-' || :k LIMIT 1;
\if :a < :b
UPDATE accounts SET updated_at = now(), balance = balance - 1 WHERE id = (SELECT id FROM bench_accounts WHERE n = :a) AND (allow_negative = true OR balance - pending_debits >= 1) RETURNING balance AS dbal, user_id AS duser \gset
UPDATE accounts SET updated_at = now(), balance = balance + 1 WHERE id = (SELECT id FROM bench_accounts WHERE n = :b) RETURNING balance AS cbal, user_id AS cuser \gset
\else
UPDATE accounts SET updated_at = now(), balance = balance + 1 WHERE id = (SELECT id FROM bench_accounts WHERE n = :b) RETURNING balance AS cbal, user_id AS cuser \gset
UPDATE accounts SET updated_at = now(), balance = balance - 1 WHERE id = (SELECT id FROM bench_accounts WHERE n = :a) AND (allow_negative = true OR balance - pending_debits >= 1) RETURNING balance AS dbal, user_id AS duser \gset
\endif
INSERT INTO transfers (id, debit_account_id, credit_account_id, asset, amount, kind, phase, status, pending_id, refund_of, timeout_at, resolved_at, reference, idempotency_key, request_hash, metadata, debit_balance_after, credit_balance_after, created_at) VALUES (gen_random_uuid(), (SELECT id FROM bench_accounts WHERE n = :a), (SELECT id FROM bench_accounts WHERE n = :b), 'COIN', 1, 'grant', 'single', 'posted', NULL, NULL, NULL, NULL, NULL, 'pgb-' || :client_id || '-' || :k, md5(cast(:k as text)) || md5(cast(:a as text)), '{}', :dbal, :cbal, now()) RETURNING *;
COMMIT;
