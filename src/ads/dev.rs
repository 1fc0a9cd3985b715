//! Development stand-ins for the ad networks, so a local server earns coins with no network
//! account: a Monetag-shaped SDK whose `show_<zone>()` resolves after a few seconds, and a
//! GMA player whose end makes the server send itself a Google-format SSV callback signed
//! with a key it publishes at `/dev/ads/verifier-keys.json`. On only when PUBLIC_URL is a
//! loopback address (see `ADS_DEV_FAKES`).

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use p256::{
    ecdsa::{Signature, SigningKey, signature::Signer},
    pkcs8::{EncodePublicKey, LineEnding},
};
use poem::{
    Request, Response, handler,
    http::{StatusCode, header},
    web::Data,
};

use super::entity::ad_nonce;
use crate::{app::AppState, graphql::error::http_error};

/// The zone the dev SDK serves when MONETAG_ZONE_ID is unset.
pub const DEV_ZONE: &str = "10000001";

pub struct DevFakes {
    key: SigningKey,
    key_id: u64,
    ad_seconds: u32,
}

impl DevFakes {
    pub fn new(ad_seconds: u32) -> Self {
        Self {
            key: SigningKey::random(&mut rand::rngs::OsRng),
            key_id: rand::random::<u32>().into(),
            ad_seconds,
        }
    }

    /// `verifier-keys.json`, as Google publishes it.
    pub fn key_file(&self) -> serde_json::Value {
        let public = self.key.verifying_key();
        let der = public
            .to_public_key_der()
            .map(|d| STANDARD.encode(d.as_bytes()))
            .unwrap_or_default();
        let pem = public.to_public_key_pem(LineEnding::LF).unwrap_or_default();
        serde_json::json!({"keys": [{"keyId": self.key_id, "pem": pem, "base64": der}]})
    }

    /// A Google-format callback query for this nonce, signed with the dev key.
    pub fn callback_query(&self, row: &ad_nonce::Model, amount: i64, now_ms: i64) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("ad_network", "5450213213286189855")
            .append_pair("ad_unit", "1234567890")
            .append_pair("custom_data", &row.nonce)
            .append_pair("reward_amount", &amount.to_string())
            .append_pair("reward_item", "coins")
            .append_pair("timestamp", &now_ms.to_string())
            .append_pair("transaction_id", &hex::encode(rand::random::<[u8; 16]>()))
            .append_pair("user_id", &row.user_id.to_string());
        let signed = q.finish();
        let sig: Signature = self.key.sign(signed.as_bytes());
        format!(
            "{signed}&signature={}&key_id={}",
            URL_SAFE_NO_PAD.encode(sig.to_der().as_bytes()),
            self.key_id
        )
    }
}

fn dev(state: &AppState) -> Option<&DevFakes> {
    state.ads.dev.as_ref()
}

fn off() -> Response {
    http_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "the dev ad fakes are off",
    )
}

#[handler]
pub async fn verifier_keys(Data(state): Data<&AppState>) -> Response {
    let Some(dev) = dev(state) else { return off() };
    Response::builder()
        .content_type("application/json")
        .body(dev.key_file().to_string())
}

/// The Monetag-shaped SDK: `window.show_<zone>()` returns a promise that resolves when the
/// pretend ad closes.
#[handler]
pub async fn monetag_sdk(Data(state): Data<&AppState>) -> Response {
    let Some(dev) = dev(state) else { return off() };
    let zone = state
        .ads
        .monetag
        .as_ref()
        .map_or(DEV_ZONE, |m| m.zone_id.as_str());
    let zone_ident: String = zone
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let script = format!(
        r#"(function () {{
  var seconds = {seconds};
  window["show_{zone_ident}"] = function (options) {{
    return new Promise(function (resolve) {{
      var box = document.createElement("div");
      box.setAttribute("role", "dialog");
      box.setAttribute("aria-label", "Development ad");
      box.style.cssText = "position:fixed;inset:0;display:flex;align-items:center;justify-content:center;background:rgba(0,0,0,.8);color:#fff;font:24px sans-serif;z-index:99999";
      document.body.appendChild(box);
      var left = seconds;
      var tick = function () {{
        box.textContent = "Development ad: " + left + " s";
        if (left-- <= 0) {{ box.remove(); resolve({{ ymid: options && options.ymid }}); return; }}
        setTimeout(tick, 1000);
      }};
      tick();
    }});
  }};
}})();
"#,
        seconds = dev.ad_seconds,
    );
    Response::builder()
        .content_type("text/javascript; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(script)
}

/// A page that plays a pretend GMA ad for the nonce in its ad tag, then asks the server
/// to send the SSV callback.
#[handler]
pub async fn gma_player(Data(state): Data<&AppState>) -> Response {
    let Some(dev) = dev(state) else { return off() };
    let page = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Development ad</title></head>
<body style="font:20px sans-serif;display:flex;align-items:center;justify-content:center;height:100vh;margin:0">
<p id="status" role="status">Development ad…</p>
<script>
(function () {{
  var cust = new URLSearchParams(new URLSearchParams(location.search).get("cust_params") || "");
  var nonce = cust.get("nonce");
  var left = {seconds};
  var status = document.getElementById("status");
  var tick = function () {{
    status.textContent = "Development ad: " + left + " s";
    if (left-- > 0) {{ setTimeout(tick, 1000); return; }}
    fetch("/dev/ads/gma/complete", {{
      method: "POST",
      headers: {{ "content-type": "application/json" }},
      body: JSON.stringify({{ nonce: nonce }})
    }}).then(function (r) {{ return r.json(); }}).then(function (body) {{
      status.textContent = body.credited ? "Rewarded: " + body.credited + " coins" : "Done";
      if (window.parent !== window) window.parent.postMessage({{ type: "tessera-dev-ad-ended", nonce: nonce }}, location.origin);
    }});
  }};
  tick();
}})();
</script></body></html>"#,
        seconds = dev.ad_seconds,
    );
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(page)
}

#[derive(serde::Deserialize)]
struct CompleteBody {
    nonce: String,
}

/// The end of the dev GMA ad: the server sends its own `/ads/ssv` a signed callback, as
/// Google would, and answers what that said.
#[handler]
pub async fn gma_complete(
    req: &Request,
    body: poem::Body,
    Data(state): Data<&AppState>,
) -> Response {
    let Some(dev) = dev(state) else { return off() };
    let _ = req;
    let Ok(bytes) = body.into_bytes_limit(4096).await else {
        return http_error(StatusCode::BAD_REQUEST, "bad_request", "unreadable body");
    };
    let Ok(parsed) = serde_json::from_slice::<CompleteBody>(&bytes) else {
        return http_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "expected {\"nonce\": …}",
        );
    };
    let row = <ad_nonce::Entity as sea_orm::EntityTrait>::find_by_id(parsed.nonce)
        .one(state.db.conn())
        .await;
    let Ok(Some(row)) = row else {
        return http_error(
            StatusCode::CONFLICT,
            "unknown_nonce",
            "no ad was prepared under this nonce",
        );
    };
    let query = dev.callback_query(
        &row,
        state.config.ads.reward_amount,
        state.ads.clock.now().timestamp_millis(),
    );
    let base = state.config.public_url();
    let url = format!("{}/ads/ssv?{query}", base.as_str().trim_end_matches('/'));
    match state.ads.client.get(url).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.bytes().await.unwrap_or_default();
            Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY))
                .content_type("application/json")
                .body(body.to_vec())
        }
        Err(e) => http_error(
            StatusCode::BAD_GATEWAY,
            "ssv_unreachable",
            &format!("the server could not call its own SSV route: {e}"),
        ),
    }
}
