//! Rewarded-ad settings (flattened into [`crate::config::Config`]). The names and defaults
//! are those the ads stack has always used; the new ones start with `ADS_`.

use std::path::PathBuf;

use clap::Args;
use url::Url;

use crate::config::{ConfigError, HumanDuration, Secret};

/// Google's published SSV verifier keys.
pub const GOOGLE_KEYS_URL: &str = "https://www.gstatic.com/admob/reward/verifier-keys.json";
/// Cloudflare Turnstile's siteverify endpoint.
pub const TURNSTILE_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/siteverify";
/// Where Google serves the IMA HTML5 SDK.
const IMA_SDK: &str = "https://imasdk.googleapis.com/js/sdkloader/ima3.js";
pub const TURNSTILE_SCRIPT: &str =
    "https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit";

#[derive(Debug, Clone, Args)]
pub struct AdsConfig {
    /// Coins one watched ad credits.
    #[arg(
        long,
        env = "REWARD_AMOUNT",
        value_name = "REWARD_AMOUNT",
        default_value_t = 5
    )]
    pub reward_amount: i64,

    /// Seconds an ad must stay visible before its completion counts.
    #[arg(
        long,
        env = "REQUIRED_DURATION",
        value_name = "REQUIRED_DURATION",
        default_value_t = 30
    )]
    pub required_duration: u32,

    /// Seconds between two rewards of one user or one device.
    #[arg(
        long,
        env = "MIN_INTERVAL",
        value_name = "MIN_INTERVAL",
        default_value_t = 30
    )]
    pub min_interval: u32,

    /// Rewards per user per UTC day (before the adaptive cut).
    #[arg(
        long,
        env = "DAILY_CAP_USER",
        value_name = "DAILY_CAP_USER",
        default_value_t = 40
    )]
    pub daily_cap_user: u32,

    /// Rewards per device per UTC day.
    #[arg(
        long,
        env = "DAILY_CAP_DEVICE",
        value_name = "DAILY_CAP_DEVICE",
        default_value_t = 60
    )]
    pub daily_cap_device: u32,

    /// Rewards per client address per UTC day.
    #[arg(
        long,
        env = "ADS_DAILY_CAP_IP",
        value_name = "ADS_DAILY_CAP_IP",
        default_value_t = 100
    )]
    pub ads_daily_cap_ip: u32,

    /// The floor of the adaptive user cap.
    #[arg(
        long,
        env = "RWD_PER_DAY_MIN",
        value_name = "RWD_PER_DAY_MIN",
        default_value_t = 20
    )]
    pub rwd_per_day_min: u32,

    /// SSV failure ratio (over the last 30 minutes) above which the user cap is halved.
    #[arg(
        long,
        env = "SSV_FAIL_THRESHOLD",
        value_name = "SSV_FAIL_THRESHOLD",
        default_value_t = 0.2
    )]
    pub ssv_fail_threshold: f64,

    /// `monetag` or `gma`: the provider a client should offer first.
    #[arg(
        long,
        env = "DEFAULT_PROVIDER",
        value_name = "DEFAULT_PROVIDER",
        default_value = "monetag"
    )]
    pub default_provider: String,

    #[arg(
        long,
        env = "ENABLE_MONETAG",
        value_name = "ENABLE_MONETAG",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub enable_monetag: bool,

    #[arg(
        long,
        env = "ENABLE_GMA",
        value_name = "ENABLE_GMA",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub enable_gma: bool,

    /// Monetag zone. Monetag is offered only with a zone and a script URL.
    #[arg(long, env = "MONETAG_ZONE_ID", value_name = "MONETAG_ZONE_ID")]
    pub monetag_zone_id: Option<String>,

    /// Monetag SDK script the browser loads.
    #[arg(long, env = "MONETAG_SCRIPT_URL", value_name = "MONETAG_SCRIPT_URL")]
    pub monetag_script_url: Option<Url>,

    /// Key of the ticket HMAC (and, derived from it, of device hashes). Unset: generated
    /// once into DATA_DIR/ads-keys.json; every instance must share it.
    #[arg(
        long,
        env = "MONETAG_TICKET_SECRET",
        value_name = "MONETAG_TICKET_SECRET"
    )]
    pub monetag_ticket_secret: Option<Secret>,

    /// Seconds a ticket stays valid.
    #[arg(
        long,
        env = "MONETAG_TICKET_TTL",
        value_name = "MONETAG_TICKET_TTL",
        default_value_t = 180
    )]
    pub monetag_ticket_ttl: u32,

    /// Credit a Monetag completion only once Monetag's `valued` postback for it arrived
    /// (until then completion answers PENDING).
    #[arg(
        long,
        env = "MONETAG_REQUIRE_POSTBACK",
        value_name = "MONETAG_REQUIRE_POSTBACK",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub monetag_require_postback: bool,

    /// Google IMA ad tag; GMA is offered only with one.
    #[arg(long, env = "AD_TAG_BASE", value_name = "AD_TAG_BASE")]
    pub ad_tag_base: Option<Url>,

    /// Google's IMA HTML5 SDK, which the app loads to play the ad tag (its origin joins the
    /// Content-Security-Policy when GMA is on).
    #[arg(
        long,
        env = "IMA_SDK_URL",
        value_name = "IMA_SDK_URL",
        default_value = IMA_SDK
    )]
    pub ima_sdk_url: Url,

    /// Price floor passed in the ad tag's custom parameters.
    #[arg(long, env = "PRICE_FLOOR", value_name = "PRICE_FLOOR")]
    pub price_floor: Option<String>,

    /// HMAC key of the existing SSV callback format.
    #[arg(long, env = "SSV_SECRET", value_name = "SSV_SECRET")]
    pub ssv_secret: Option<Secret>,

    /// RSA public key (PEM) of the existing SSV format's RS256 signatures; wins over
    /// SSV_SECRET.
    #[arg(long, env = "PUBLIC_KEY_PATH", value_name = "PUBLIC_KEY_PATH")]
    pub public_key_path: Option<PathBuf>,

    /// Optional key of `X-Client-Signature` (HMAC of userId|clientNonce|timestamp|placement).
    #[arg(
        long,
        env = "CLIENT_SIGNING_SECRET",
        value_name = "CLIENT_SIGNING_SECRET"
    )]
    pub client_signing_secret: Option<Secret>,

    #[arg(long, env = "TURNSTILE_SITE_KEY", value_name = "TURNSTILE_SITE_KEY")]
    pub turnstile_site_key: Option<String>,

    /// With it, prepare requires a Turnstile token that siteverify accepts.
    #[arg(
        long,
        env = "TURNSTILE_SECRET_KEY",
        value_name = "TURNSTILE_SECRET_KEY"
    )]
    pub turnstile_secret_key: Option<Secret>,

    /// Accepted and ignored: Turnstile answers pass or fail, with no score.
    #[arg(long, env = "TURNSTILE_MIN_SCORE", value_name = "TURNSTILE_MIN_SCORE")]
    pub turnstile_min_score: Option<f64>,

    /// Let a prepare without a Turnstile token through (a client that cannot show the widget).
    #[arg(
        long,
        env = "TURNSTILE_ALLOW_MISSING",
        value_name = "TURNSTILE_ALLOW_MISSING",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub turnstile_allow_missing: bool,

    /// The widget's script, which the app loads when a site key is set (its origin joins
    /// the Content-Security-Policy).
    #[arg(
        long,
        env = "TURNSTILE_SCRIPT_URL",
        value_name = "TURNSTILE_SCRIPT_URL",
        default_value = TURNSTILE_SCRIPT
    )]
    pub turnstile_script_url: Url,

    #[arg(
        long,
        env = "TURNSTILE_VERIFY_URL",
        value_name = "TURNSTILE_VERIFY_URL",
        default_value = TURNSTILE_URL
    )]
    pub turnstile_verify_url: Url,

    /// Autonomous system numbers refused at prepare (comma-separated, `AS` prefix optional).
    #[arg(
        long,
        env = "ADS_BLOCKED_ASN",
        value_name = "ADS_BLOCKED_ASN",
        value_delimiter = ','
    )]
    pub ads_blocked_asn: Vec<String>,

    /// Client networks refused at prepare (comma-separated CIDRs).
    #[arg(
        long,
        env = "ADS_BLOCKED_IPS",
        value_name = "ADS_BLOCKED_IPS",
        value_delimiter = ','
    )]
    pub ads_blocked_ips: Vec<ipnet::IpNet>,

    /// Placements a client may name.
    #[arg(
        long,
        env = "ADS_ALLOWED_PLACEMENTS",
        value_name = "ADS_ALLOWED_PLACEMENTS",
        value_delimiter = ',',
        default_value = "earn,daily,boost,test"
    )]
    pub ads_allowed_placements: Vec<String>,

    /// Where Google's SSV verifier keys are fetched. Unset: Google's, or the dev fakes'
    /// when those are on.
    #[arg(long, env = "ADS_SSV_KEYS_URL", value_name = "ADS_SSV_KEYS_URL")]
    pub ads_ssv_keys_url: Option<Url>,

    /// Ad units (AdMob / Ad Manager `ad_unit` ids) whose Google callbacks count,
    /// comma-separated. Empty: any, with a start-up warning (Google signs every publisher's
    /// callbacks with the same keys).
    #[arg(
        long,
        env = "ADS_SSV_AD_UNITS",
        value_name = "ADS_SSV_AD_UNITS",
        value_delimiter = ','
    )]
    pub ads_ssv_ad_units: Vec<String>,

    /// Secret a Monetag postback must carry as `key=` (put it in the postback URL configured
    /// at Monetag). Unset: postbacks are matched by `ymid` only.
    #[arg(
        long,
        env = "MONETAG_POSTBACK_KEY",
        value_name = "MONETAG_POSTBACK_KEY"
    )]
    pub monetag_postback_key: Option<Secret>,

    /// Header carrying the client's ASN, believed only from TRUSTED_PROXIES.
    #[arg(long, env = "ADS_ASN_HEADER", value_name = "ADS_ASN_HEADER")]
    pub ads_asn_header: Option<String>,

    /// Serve a Monetag-shaped SDK, a GMA player and a dev SSV key under /dev/ads, so a local
    /// server earns coins. Unset: on with the embedded SQLite database. Refused unless
    /// PUBLIC_URL is a loopback address.
    #[arg(long, env = "ADS_DEV_FAKES", value_name = "ADS_DEV_FAKES")]
    pub ads_dev_fakes: Option<bool>,

    /// Seconds the dev Monetag SDK's `show_<zone>()` takes to resolve.
    #[arg(
        long,
        env = "ADS_DEV_AD_SECONDS",
        value_name = "ADS_DEV_AD_SECONDS",
        default_value_t = 3
    )]
    pub ads_dev_ad_seconds: u32,

    /// Prepares per client address and per user: `COUNT/PERIOD`.
    #[arg(
        long,
        env = "ADS_PREPARE_RATE",
        value_name = "ADS_PREPARE_RATE",
        default_value = "20/2s"
    )]
    pub ads_prepare_rate: RateSetting,

    /// SSV callbacks per (address, user).
    #[arg(
        long,
        env = "ADS_SSV_RATE",
        value_name = "ADS_SSV_RATE",
        default_value = "5/10s"
    )]
    pub ads_ssv_rate: RateSetting,

    /// Monetag postbacks per address.
    #[arg(
        long,
        env = "ADS_POSTBACK_RATE",
        value_name = "ADS_POSTBACK_RATE",
        default_value = "50/1s"
    )]
    pub ads_postback_rate: RateSetting,
}

/// `COUNT/PERIOD`, such as `20/2s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSetting(pub crate::platform::kv::RateLimit);

impl std::str::FromStr for RateSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (count, period) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not COUNT/PERIOD (such as 20/2s)"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{count}` is not a count"))?;
        let period: HumanDuration = period.trim().parse()?;
        if count == 0 || period.0.is_zero() {
            return Err("a rate needs a count and a period above zero".into());
        }
        Ok(Self(crate::platform::kv::RateLimit::new(count, period.0)))
    }
}

impl AdsConfig {
    /// Prepare asks for a Turnstile token (both keys set): the app then shows the widget.
    pub fn turnstile_enabled(&self) -> bool {
        self.turnstile_site_key.is_some() && self.turnstile_secret_key.is_some()
    }

    pub fn validate(&self, public_url: &Url) -> Result<(), ConfigError> {
        let err = |variable, message: &str| {
            Err(ConfigError {
                variable,
                message: message.to_owned(),
            })
        };
        if self.reward_amount <= 0 {
            return err("REWARD_AMOUNT", "must be at least 1");
        }
        if self.monetag_ticket_ttl <= self.required_duration {
            return err(
                "MONETAG_TICKET_TTL",
                "must be longer than REQUIRED_DURATION, or no ticket could be completed",
            );
        }
        if !(0.0..=1.0).contains(&self.ssv_fail_threshold) {
            return err("SSV_FAIL_THRESHOLD", "must be between 0 and 1");
        }
        if !matches!(self.default_provider.as_str(), "monetag" | "gma") {
            return err("DEFAULT_PROVIDER", "must be monetag or gma");
        }
        if self.ads_allowed_placements.is_empty()
            || self
                .ads_allowed_placements
                .iter()
                .any(|p| p.is_empty() || p.len() > 32)
        {
            return err(
                "ADS_ALLOWED_PLACEMENTS",
                "must name at least one placement of 1 to 32 characters",
            );
        }
        if self.ads_dev_fakes == Some(true) && !is_loopback(public_url) {
            return err(
                "ADS_DEV_FAKES",
                "the dev ad fakes credit coins without any ad network; they run only when PUBLIC_URL is a loopback address",
            );
        }
        Ok(())
    }

    /// Whether the dev fakes run: as set, or on with SQLite when PUBLIC_URL is loopback.
    pub fn dev_fakes(&self, public_url: &Url, sqlite: bool) -> bool {
        self.ads_dev_fakes
            .unwrap_or(sqlite && is_loopback(public_url))
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
