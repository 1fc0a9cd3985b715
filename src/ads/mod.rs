//! Rewarded ads: coins for watched ads, credited once and within caps.
//!
//! - `prepareAdReward` checks the caller (rate limits, blocked networks, Turnstile, an
//!   optional client signature, cooldown, daily caps) and issues a nonce, stored in
//!   `ad_nonces`, with an HMAC-signed ticket binding it to the user, the placement and the
//!   device.
//! - Monetag: the browser shows the ad and calls `completeAdReward` with the ticket; the
//!   server checks the ticket and its own clock, locks the nonce, and credits. Monetag's
//!   postbacks (unsigned, P28) are honoured only for a nonce we issued; with
//!   `MONETAG_REQUIRE_POSTBACK` the credit waits for the `valued` one.
//! - Google (GMA): Google calls `/ads/ssv` with an ECDSA-signed query naming the nonce in
//!   `custom_data`; the existing HMAC / RS256 callback format lands on the same route.
//! - Every credit is one transaction: the per-day counters (`count < cap`), the
//!   `ad_rewards` row (unique nonce and event id) and the wallet transfer
//!   (`system:ads` → user, idempotency key `ads:<nonce>`).

pub mod batch;
pub mod config;
pub mod dev;
pub mod entity;
pub mod graphql;
pub mod http;
pub mod service;
pub mod ssv;
pub mod ticket;

use std::{
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicI64},
    },
    time::Duration,
};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::Config;

pub use crate::platform::clock::Clock;

/// Monetag as offered to clients.
#[derive(Debug, Clone)]
pub struct MonetagSettings {
    pub zone_id: String,
    pub script_url: String,
}

/// The ads domain's long-lived parts, shared through `AppState`.
pub struct AdsState {
    ticket_key: Vec<u8>,
    device_key: Vec<u8>,
    pub clock: Clock,
    pub monetag: Option<MonetagSettings>,
    pub ad_tag_base: Option<url::Url>,
    /// The ad tag is the dev player's: hand it out as a same-origin path.
    pub dev_tag: bool,
    pub google_keys: ssv::GoogleKeys,
    pub legacy_rsa: Option<rsa::pkcs1v15::VerifyingKey<sha2::Sha256>>,
    /// For Turnstile and the key server.
    pub client: reqwest::Client,
    pub dev: Option<dev::DevFakes>,
    /// (minute, ratio) of the last failure-ratio reading, and when it was read.
    ratio: Mutex<Option<(i64, f64, std::time::Instant)>>,
    /// Verified SSV callbacks not yet added to the failure window's kv counter.
    ssv_ok_pending: AtomicI64,
    /// A write of `ssv_ok_pending` is scheduled.
    ssv_ok_flush_due: AtomicBool,
    /// Credits waiting to be written together.
    pub credits: batch::CreditQueue,
}

#[derive(Serialize, Deserialize)]
struct StoredKeys {
    ticket_secret: String,
}

impl AdsState {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let ads = &config.ads;
        let secret = match &ads.monetag_ticket_secret {
            Some(s) => s.expose().as_bytes().to_vec(),
            None => load_or_create(&config.data_dir.join("ads-keys.json"))?.into_bytes(),
        };
        let device_key = ticket::hmac_hex(&secret, b"device-hash-key").into_bytes();
        let public = config.public_url();
        let base = public.as_str().trim_end_matches('/').to_owned();
        let dev = config
            .ads_dev_fakes()
            .then(|| dev::DevFakes::new(ads.ads_dev_ad_seconds));
        let monetag = match (&ads.monetag_zone_id, &ads.monetag_script_url, &dev) {
            _ if !ads.enable_monetag => None,
            (Some(zone), Some(url), _) => Some(MonetagSettings {
                zone_id: zone.clone(),
                script_url: url.to_string(),
            }),
            // Same-origin paths: the page may be open under another name than PUBLIC_URL
            // (127.0.0.1 against localhost), and its CSP allows only its own origin.
            (zone, None, Some(_)) => Some(MonetagSettings {
                zone_id: zone.clone().unwrap_or_else(|| dev::DEV_ZONE.to_owned()),
                script_url: "/dev/ads/monetag.js".to_owned(),
            }),
            _ => None,
        };
        let ad_tag_base = match (&ads.ad_tag_base, &dev) {
            _ if !ads.enable_gma => None,
            (Some(tag), _) => Some(tag.clone()),
            (None, Some(_)) => Some(
                format!("{base}/dev/ads/gma/player?sz=640x480")
                    .parse()
                    .context("dev ad tag")?,
            ),
            _ => None,
        };
        let keys_url = match (&ads.ads_ssv_keys_url, &dev) {
            (Some(url), _) => url.clone(),
            (None, Some(_)) => format!("{base}/dev/ads/verifier-keys.json")
                .parse()
                .context("dev key URL")?,
            (None, None) => config::GOOGLE_KEYS_URL.parse().context("Google key URL")?,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the ads HTTP client")?;
        let legacy_rsa = ads
            .public_key_path
            .as_deref()
            .map(ssv::load_rsa)
            .transpose()?;
        if ads.turnstile_min_score.is_some() {
            tracing::warn!(
                "TURNSTILE_MIN_SCORE is ignored: Turnstile answers pass or fail and has no score"
            );
        }
        if ads.client_signing_secret.is_some() {
            tracing::info!(
                "client request signing is on; a key shipped to browsers only raises the bar"
            );
        }
        if ads.enable_gma && ads.ad_tag_base.is_some() && ads.ads_ssv_ad_units.is_empty() {
            tracing::warn!(
                "ADS_SSV_AD_UNITS is empty: a Google callback signed for any publisher's ad unit is credited"
            );
        }
        if ads.monetag_require_postback && ads.monetag_postback_key.is_none() {
            tracing::warn!(
                "MONETAG_REQUIRE_POSTBACK without MONETAG_POSTBACK_KEY: anyone who knows a ymid can send its postback"
            );
        }
        if dev.is_some() {
            tracing::warn!(
                "dev ad fakes are on: /dev/ads serves an ad SDK and an SSV key that credit coins without any ad network"
            );
        }
        Ok(Self {
            ticket_key: secret,
            device_key,
            clock: Clock::default(),
            monetag,
            dev_tag: ads.ad_tag_base.is_none() && ad_tag_base.is_some(),
            ad_tag_base,
            google_keys: ssv::GoogleKeys::new(keys_url, client.clone()),
            legacy_rsa,
            client,
            dev,
            ratio: Mutex::new(None),
            ssv_ok_pending: AtomicI64::new(0),
            ssv_ok_flush_due: AtomicBool::new(false),
            credits: batch::CreditQueue::default(),
        })
    }
}

impl std::fmt::Debug for AdsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsState")
            .field("monetag", &self.monetag)
            .field("ad_tag_base", &self.ad_tag_base)
            .finish_non_exhaustive()
    }
}

fn load_or_create(path: &Path) -> anyhow::Result<String> {
    let stored = crate::identity::tokens::load_or_create_json(
        path,
        "ads key",
        || StoredKeys {
            ticket_secret: crate::identity::tokens::random_urlsafe(32),
        },
        "generated a development ad-ticket secret; set MONETAG_TICKET_SECRET in production",
    )?;
    Ok(stored.ticket_secret)
}
