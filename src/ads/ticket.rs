//! The signed values of the ads flow: tickets, device hashes and client signatures. Pure
//! functions over keys and bytes, so every refusal is unit-tested here.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// What a ticket says. Short field names keep the ticket short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "u")]
    pub user: Uuid,
    #[serde(rename = "n")]
    pub nonce: String,
    /// `monetag` or `gma`.
    #[serde(rename = "v")]
    pub provider: String,
    #[serde(rename = "p")]
    pub placement: String,
    #[serde(rename = "d")]
    pub device: String,
    /// Unix seconds.
    #[serde(rename = "i")]
    pub issued: i64,
    #[serde(rename = "e")]
    pub expires: i64,
    /// The client's address at prepare (the per-address cap counts it).
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// A day-old account with no verified email at prepare: half the user cap.
    #[serde(rename = "h", default, skip_serializing_if = "std::ops::Not::not")]
    pub halved: bool,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketError {
    /// Not a ticket, or not signed by us.
    Invalid,
    Expired,
}

fn mac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// `v1.<base64url claims>.<base64url HMAC-SHA256 of "v1.<claims>">`.
pub fn sign(key: &[u8], claims: &Claims) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let signed = format!("v1.{body}");
    let mut m = mac(key);
    m.update(signed.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{signed}.{tag}")
}

/// Checks the HMAC (constant time) and then the expiry against `now` (Unix seconds).
pub fn verify(key: &[u8], ticket: &str, now: i64) -> Result<Claims, TicketError> {
    if ticket.len() > 2048 {
        return Err(TicketError::Invalid);
    }
    let (signed, tag) = ticket.rsplit_once('.').ok_or(TicketError::Invalid)?;
    let body = signed.strip_prefix("v1.").ok_or(TicketError::Invalid)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TicketError::Invalid)?;
    let mut m = mac(key);
    m.update(signed.as_bytes());
    m.verify_slice(&tag).map_err(|_| TicketError::Invalid)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TicketError::Invalid)?;
    if now >= claims.expires {
        return Err(TicketError::Expired);
    }
    Ok(claims)
}

/// The network part of an address that identifies a household rather than a host: the /24
/// of IPv4, the /64 of IPv6.
pub fn subnet(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => subnet(std::net::IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// HMAC-SHA256 (hex) over the client's subnet, User-Agent and client hints (sorted by
/// name, so their order on the wire does not matter).
pub fn device_hash(
    key: &[u8],
    ip: Option<std::net::IpAddr>,
    user_agent: Option<&str>,
    hints: &[(String, String)],
) -> String {
    let mut m = mac(key);
    m.update(b"device\n");
    m.update(ip.map(subnet).unwrap_or_default().as_bytes());
    m.update(b"\n");
    m.update(user_agent.unwrap_or_default().as_bytes());
    let mut sorted: Vec<&(String, String)> = hints.iter().collect();
    sorted.sort();
    for (name, value) in sorted {
        m.update(b"\n");
        m.update(name.as_bytes());
        m.update(b"=");
        m.update(value.as_bytes());
    }
    hex::encode(m.finalize().into_bytes())
}

/// What a client signs: `userId|clientNonce|timestamp|placement`.
#[derive(Debug, Clone, Copy)]
pub struct ClientClaim<'a> {
    pub user: Uuid,
    pub client_nonce: &'a str,
    /// Unix seconds.
    pub timestamp: i64,
    pub placement: &'a str,
}

/// Checks `X-Client-Signature`: hex HMAC-SHA256 of the claim, whose timestamp must be
/// within `window` seconds of `now`.
pub fn client_signature_ok(
    key: &[u8],
    claim: ClientClaim<'_>,
    signature: &str,
    now: i64,
    window: i64,
) -> bool {
    if (now - claim.timestamp).abs() > window {
        return false;
    }
    let message = format!(
        "{}|{}|{}|{}",
        claim.user, claim.client_nonce, claim.timestamp, claim.placement
    );
    hmac_hex_ok(key, message.as_bytes(), signature)
}

/// Hex HMAC-SHA256 of `message`, for the signatures above and the existing SSV format.
pub fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    let mut m = mac(key);
    m.update(message);
    hex::encode(m.finalize().into_bytes())
}

/// Constant-time check of a hex HMAC-SHA256 of `message`.
pub fn hmac_hex_ok(key: &[u8], message: &[u8], signature: &str) -> bool {
    let Ok(given) = hex::decode(signature.trim()) else {
        return false;
    };
    let mut m = mac(key);
    m.update(message);
    m.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            user: Uuid::from_u128(7),
            nonce: "n1".into(),
            provider: "monetag".into(),
            placement: "earn".into(),
            device: "d".into(),
            issued: 1_000,
            expires: 1_180,
            ip: Some("10.0.0.1".into()),
            halved: true,
        }
    }

    #[test]
    fn a_ticket_verifies_until_it_expires() {
        let t = sign(b"k", &claims());
        assert!(t.starts_with("v1."));
        assert_eq!(verify(b"k", &t, 1_179), Ok(claims()));
        assert_eq!(verify(b"k", &t, 1_180), Err(TicketError::Expired));
    }

    #[test]
    fn a_tampered_or_foreign_ticket_is_invalid() {
        let t = sign(b"k", &claims());
        assert_eq!(verify(b"other", &t, 1_000), Err(TicketError::Invalid));
        // Another user's claims under the original tag.
        let mut forged = claims();
        forged.user = Uuid::from_u128(8);
        let forged_body = sign(b"k2", &forged);
        let (_, tag) = t.rsplit_once('.').unwrap();
        let (body, _) = forged_body.rsplit_once('.').unwrap();
        assert_eq!(
            verify(b"k", &format!("{body}.{tag}"), 1_000),
            Err(TicketError::Invalid)
        );
        for junk in ["", "v1", "v1..", "v2.abc.def", &t[..t.len() - 2]] {
            assert_eq!(
                verify(b"k", junk, 1_000),
                Err(TicketError::Invalid),
                "{junk}"
            );
        }
    }

    #[test]
    fn the_device_hash_ignores_hint_order_and_the_host_part() {
        let a = device_hash(
            b"k",
            Some("10.1.2.3".parse().unwrap()),
            Some("UA"),
            &[
                ("sec-ch-ua".into(), "x".into()),
                ("sec-ch-ua-platform".into(), "y".into()),
            ],
        );
        let b = device_hash(
            b"k",
            Some("10.1.2.200".parse().unwrap()),
            Some("UA"),
            &[
                ("sec-ch-ua-platform".into(), "y".into()),
                ("sec-ch-ua".into(), "x".into()),
            ],
        );
        assert_eq!(a, b);
        let other_net = device_hash(b"k", Some("10.1.3.3".parse().unwrap()), Some("UA"), &[]);
        let same_net = device_hash(b"k", Some("10.1.2.9".parse().unwrap()), Some("UA"), &[]);
        assert_ne!(other_net, same_net);
        assert_ne!(a, same_net, "hints count");
        assert_eq!(
            subnet("2001:db8:1:2:3::9".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn client_signatures_are_checked_within_the_window() {
        let user = Uuid::from_u128(1);
        let sig = hmac_hex(b"c", format!("{user}|cn|100|earn").as_bytes());
        let claim = |placement| ClientClaim {
            user,
            client_nonce: "cn",
            timestamp: 100,
            placement,
        };
        assert!(client_signature_ok(b"c", claim("earn"), &sig, 400, 300));
        assert!(!client_signature_ok(b"c", claim("earn"), &sig, 401, 300));
        assert!(!client_signature_ok(b"c", claim("daily"), &sig, 100, 300));
        assert!(!client_signature_ok(b"x", claim("earn"), &sig, 100, 300));
        assert!(!client_signature_ok(b"c", claim("earn"), "zz", 100, 300));
    }
}
