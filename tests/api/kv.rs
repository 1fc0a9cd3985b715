//! The kv contract, run against both implementations: in-process always, Redis when
//! REDIS_URL is set. Each test gets its own key prefix.

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, future::join_all};
use tessera::{
    Config,
    config::SecretUrl,
    platform::kv::{self, Delivery, Kv, KvError, RateLimit},
};

use crate::helpers::redis_url;

async fn make(backend: &str, prefix: &str, capacity: usize) -> Arc<dyn Kv> {
    let mut config = Config::from_args([
        "--kv-prefix",
        prefix,
        "--pubsub-channel-capacity",
        &capacity.to_string(),
    ])
    .unwrap();
    config.redis_url = match backend {
        "redis" => Some(SecretUrl::new(redis_url().expect("REDIS_URL"))),
        _ => None,
    };
    kv::connect(&config).await.expect("kv connects")
}

/// The backends to run a contract test on.
fn backends() -> Vec<&'static str> {
    let mut backends = vec!["memory"];
    if redis_url().is_some() {
        backends.push("redis");
    } else {
        eprintln!("REDIS_URL unset: the Redis half of the kv contract is not run here");
    }
    backends
}

fn prefix() -> String {
    format!("kvtest:{}:", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn values_live_until_their_ttl() {
    for backend in backends() {
        let kv = make(backend, &prefix(), 64).await;
        assert_eq!(kv.backend(), backend);
        assert_eq!(kv.get("a").await.unwrap(), None);
        kv.set("a", b"one", None).await.unwrap();
        kv.set("b", b"two", Some(Duration::from_millis(300)))
            .await
            .unwrap();
        assert_eq!(kv.get("a").await.unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(kv.ttl("a").await.unwrap(), None, "{backend}: no expiry");
        let ttl = kv.ttl("b").await.unwrap().expect("b has a ttl");
        assert!(
            ttl <= Duration::from_millis(300) && ttl > Duration::from_millis(100),
            "{backend}: {ttl:?}"
        );
        kv.set("a", b"uno", None).await.unwrap();
        assert_eq!(kv.get("a").await.unwrap().as_deref(), Some(&b"uno"[..]));
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(kv.get("b").await.unwrap(), None, "{backend}: b expired");
        assert_eq!(kv.ttl("b").await.unwrap(), None);
        assert!(kv.delete("a").await.unwrap());
        assert!(
            !kv.delete("a").await.unwrap(),
            "{backend}: deleting twice reports absence"
        );
        kv.shutdown().await;
    }
}

#[tokio::test]
async fn set_nx_has_exactly_one_winner_under_concurrency() {
    for backend in backends() {
        let kv = make(backend, &prefix(), 64).await;
        let attempts = (0..32).map(|i| {
            let kv = Arc::clone(&kv);
            async move {
                kv.set_nx("lock", format!("{i}").as_bytes(), Duration::from_secs(5))
                    .await
            }
        });
        let results: Vec<bool> = join_all(attempts)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(results.iter().filter(|won| **won).count(), 1, "{backend}");
        let winner = results.iter().position(|won| *won).unwrap();
        assert_eq!(
            kv.get("lock").await.unwrap(),
            Some(winner.to_string().into_bytes())
        );

        // An expired lock can be taken again.
        assert!(
            kv.set_nx("short", b"1", Duration::from_millis(150))
                .await
                .unwrap()
        );
        assert!(
            !kv.set_nx("short", b"2", Duration::from_millis(150))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            kv.set_nx("short", b"3", Duration::from_millis(150))
                .await
                .unwrap(),
            "{backend}"
        );
        kv.shutdown().await;
    }
}

#[tokio::test]
async fn take_is_single_use_under_concurrency() {
    for backend in backends() {
        let kv = make(backend, &prefix(), 64).await;
        kv.set("state", b"s3cr3t", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        let takes = (0..16).map(|_| {
            let kv = Arc::clone(&kv);
            async move { kv.take("state").await.unwrap() }
        });
        let got: Vec<_> = join_all(takes).await.into_iter().flatten().collect();
        assert_eq!(got, vec![b"s3cr3t".to_vec()], "{backend}");
        assert_eq!(kv.get("state").await.unwrap(), None);
        kv.shutdown().await;
    }
}

#[tokio::test]
async fn counters_add_atomically_and_keep_their_first_ttl() {
    for backend in backends() {
        let kv = make(backend, &prefix(), 64).await;
        let adds = (0..50).map(|_| {
            let kv = Arc::clone(&kv);
            async move { kv.incr("hits", 1, Duration::from_secs(30)).await.unwrap() }
        });
        let mut seen: Vec<i64> = join_all(adds).await;
        seen.sort_unstable();
        assert_eq!(
            seen,
            (1..=50).collect::<Vec<_>>(),
            "{backend}: every value seen once"
        );
        assert_eq!(
            kv.incr("hits", -10, Duration::from_secs(30)).await.unwrap(),
            40
        );

        // The window is fixed: later increments do not extend it.
        kv.incr("window", 1, Duration::from_millis(400))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        kv.incr("window", 1, Duration::from_secs(60)).await.unwrap();
        let ttl = kv.ttl("window").await.unwrap().unwrap();
        assert!(
            ttl <= Duration::from_millis(210),
            "{backend}: ttl was extended to {ttl:?}"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            kv.incr("window", 1, Duration::from_secs(1)).await.unwrap(),
            1,
            "{backend}"
        );

        kv.set("text", b"hello", None).await.unwrap();
        let err = kv
            .incr("text", 1, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, KvError::Protocol(_)), "{backend}: {err:?}");
        kv.shutdown().await;
    }
}

#[tokio::test]
async fn rate_limit_admits_exactly_the_limit_under_concurrency() {
    for backend in backends() {
        let kv = make(backend, &prefix(), 64).await;
        let limit = RateLimit::new(5, Duration::from_secs(2));
        let calls = (0..20).map(|_| {
            let kv = Arc::clone(&kv);
            async move { kv.rate_limit("login:1.2.3.4", limit).await.unwrap() }
        });
        let decisions = join_all(calls).await;
        let allowed = decisions.iter().filter(|d| d.allowed).count();
        assert_eq!(allowed, 5, "{backend}");
        let refused = decisions.iter().find(|d| !d.allowed).unwrap();
        assert!(
            refused.retry_after > Duration::ZERO
                && refused.retry_after <= Duration::from_millis(400),
            "{backend}: retry after {:?}",
            refused.retry_after
        );
        // Another key has its own budget.
        assert!(kv.rate_limit("login:5.6.7.8", limit).await.unwrap().allowed);
        // One interval later, one more.
        tokio::time::sleep(Duration::from_millis(450)).await;
        let d = kv.rate_limit("login:1.2.3.4", limit).await.unwrap();
        assert!(d.allowed, "{backend}: refilled");
        assert!(!kv.rate_limit("login:1.2.3.4", limit).await.unwrap().allowed);
        kv.shutdown().await;
    }
}

#[tokio::test]
async fn rate_limit_budget_is_whole_again_once_its_key_expires() {
    for backend in backends() {
        let kv = make(backend, &prefix(), 64).await;
        let limit = RateLimit::new(3, Duration::from_millis(300));
        for round in 0..2 {
            for n in 0..3 {
                assert!(
                    kv.rate_limit("ip:9.9.9.9", limit).await.unwrap().allowed,
                    "{backend}: round {round}, call {n}"
                );
            }
            assert!(
                !kv.rate_limit("ip:9.9.9.9", limit).await.unwrap().allowed,
                "{backend}: round {round}, over the burst"
            );
            // The key lives until its budget is whole; past that it is gone (Redis) or
            // expired in place (in process), and a full burst is allowed again.
            tokio::time::sleep(Duration::from_millis(350)).await;
        }
        kv.shutdown().await;
    }
}

async fn next_delivery(sub: &mut kv::Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a delivery within 5 s")
        .expect("the subscription is open")
}

#[tokio::test]
async fn pubsub_delivers_in_order_to_every_subscriber() {
    for backend in backends() {
        let kv = make(backend, &prefix(), 64).await;
        let mut first = kv.subscribe("progress").await.unwrap();
        let mut second = kv.subscribe("progress").await.unwrap();
        let mut other = kv.subscribe("elsewhere").await.unwrap();
        for i in 0..10 {
            kv.publish("progress", format!("m{i}").as_bytes())
                .await
                .unwrap();
        }
        for sub in [&mut first, &mut second] {
            for i in 0..10 {
                assert_eq!(
                    next_delivery(sub).await,
                    Delivery::Message(format!("m{i}").into_bytes()),
                    "{backend}"
                );
            }
        }
        kv.publish("elsewhere", b"x").await.unwrap();
        assert_eq!(
            next_delivery(&mut other).await,
            Delivery::Message(b"x".to_vec())
        );

        // Dropping one subscriber leaves the other subscribed.
        drop(first);
        tokio::time::sleep(Duration::from_millis(100)).await;
        kv.publish("progress", b"after").await.unwrap();
        assert_eq!(
            next_delivery(&mut second).await,
            Delivery::Message(b"after".to_vec()),
            "{backend}"
        );
        drop(second);
        // Nobody listens: publishing is still fine.
        tokio::time::sleep(Duration::from_millis(100)).await;
        kv.publish("progress", b"void").await.unwrap();
        // Subscribing again works after the channel went idle.
        let mut again = kv.subscribe("progress").await.unwrap();
        kv.publish("progress", b"back").await.unwrap();
        assert_eq!(
            next_delivery(&mut again).await,
            Delivery::Message(b"back".to_vec()),
            "{backend}"
        );
        kv.shutdown().await;
    }
}

#[tokio::test]
async fn a_lagging_subscriber_is_told_it_missed_messages() {
    for backend in backends() {
        let kv = make(backend, &prefix(), 4).await;
        let mut slow = kv.subscribe("burst").await.unwrap();
        for i in 0..40 {
            kv.publish("burst", format!("{i}").as_bytes())
                .await
                .unwrap();
        }
        // Let every message reach the local fan-out before reading.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut saw_gap = false;
        let mut last = None;
        while let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(300), slow.next()).await
        {
            match delivery {
                Delivery::Gap => saw_gap = true,
                Delivery::Message(m) => last = Some(String::from_utf8(m).unwrap()),
            }
        }
        assert!(
            saw_gap,
            "{backend}: a lagging subscriber must see a gap, not a silent loss"
        );
        assert_eq!(
            last.as_deref(),
            Some("39"),
            "{backend}: the newest message still arrives"
        );
        kv.shutdown().await;
    }
}

#[tokio::test]
async fn prefixes_isolate_and_shared_prefixes_share() {
    for backend in backends() {
        let shared = prefix();
        let a = make(backend, &shared, 64).await;
        let other = make(backend, &prefix(), 64).await;
        a.set("k", b"v", None).await.unwrap();
        assert_eq!(
            other.get("k").await.unwrap(),
            None,
            "{backend}: prefixes isolate"
        );
        a.shutdown().await;
        other.shutdown().await;
    }
    let Some(_) = redis_url() else { return };
    // Two Redis clients (two instances) on one prefix see one state and one pub/sub.
    let shared = prefix();
    let a = make("redis", &shared, 64).await;
    let b = make("redis", &shared, 64).await;
    a.set("k", b"v", None).await.unwrap();
    assert_eq!(b.get("k").await.unwrap(), Some(b"v".to_vec()));
    assert!(
        a.set_nx("once", b"a", Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert!(
        !b.set_nx("once", b"b", Duration::from_secs(5))
            .await
            .unwrap()
    );
    let limit = RateLimit::new(2, Duration::from_secs(10));
    assert!(a.rate_limit("r", limit).await.unwrap().allowed);
    assert!(b.rate_limit("r", limit).await.unwrap().allowed);
    assert!(
        !a.rate_limit("r", limit).await.unwrap().allowed,
        "the limit is shared"
    );
    let mut sub = b.subscribe("events").await.unwrap();
    a.publish("events", b"from a").await.unwrap();
    assert_eq!(
        next_delivery(&mut sub).await,
        Delivery::Message(b"from a".to_vec())
    );
    a.shutdown().await;
    b.shutdown().await;
}
