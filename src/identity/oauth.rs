//! The provider side of external sign-in: authorization URLs and turning a callback's code
//! into a verified profile. Google (or any OpenID Connect issuer) goes through discovery and
//! ID-token verification; Discord and GitHub are plain OAuth2 plus their user APIs, since
//! neither gives a usable ID token (Discord's discovery lacks a userinfo endpoint and its
//! userinfo says `id`, not `sub`; GitHub is not OIDC at all).
//!
//! Every flow uses the authorization code with PKCE (S256); OIDC adds a nonce. State,
//! verifier and nonce are kept server-side by the caller ([`super::http`]).

use std::time::{Duration, Instant};

use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
    basic::BasicClient,
};
use openidconnect::{
    AuthenticationFlow, IssuerUrl, Nonce,
    core::{CoreClient, CoreProviderMetadata, CoreResponseType},
};
use serde::Deserialize;
use tokio::sync::RwLock;
use url::Url;

use super::config::IdentityConfig;

/// How long discovered issuer metadata (and its signing keys) is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(15 * 60);

/// The sign-in providers Tessera knows.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthProviderKind {
    Discord,
    Google,
    #[graphql(name = "GITHUB")]
    GitHub,
}

impl AuthProviderKind {
    pub const ALL: [AuthProviderKind; 3] = [
        AuthProviderKind::Discord,
        AuthProviderKind::Google,
        AuthProviderKind::GitHub,
    ];

    /// The name in URLs and in the `identities.provider` column.
    pub fn slug(self) -> &'static str {
        match self {
            AuthProviderKind::Discord => "discord",
            AuthProviderKind::Google => "google",
            AuthProviderKind::GitHub => "github",
        }
    }

    pub fn parse(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.slug() == slug)
    }

    pub fn label(self) -> &'static str {
        match self {
            AuthProviderKind::Discord => "Discord",
            AuthProviderKind::Google => "Google",
            AuthProviderKind::GitHub => "GitHub",
        }
    }
}

/// What a provider vouches for after a completed sign-in.
#[derive(Debug, Clone)]
pub struct ExternalProfile {
    pub kind: AuthProviderKind,
    /// Stable id at the provider (never the login or email, which change).
    pub subject: String,
    pub email: Option<String>,
    /// Whether the provider has verified `email`. Only a verified address can join an
    /// existing account.
    pub email_verified: bool,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

/// Why a provider step failed.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0} sign-in is not configured")]
    NotConfigured(&'static str),
    /// The provider could not be reached or answered nonsense; retrying may help.
    #[error("the sign-in provider failed: {0}")]
    Provider(String),
    /// The provider's answer was refused (bad code, bad ID token, …).
    #[error("{message}")]
    Rejected {
        reason: &'static str,
        message: String,
    },
}

impl OAuthError {
    pub fn reason(&self) -> &'static str {
        match self {
            OAuthError::NotConfigured(_) => "provider_not_configured",
            OAuthError::Provider(_) => "provider_unavailable",
            OAuthError::Rejected { reason, .. } => reason,
        }
    }
}

fn rejected(reason: &'static str, message: impl Into<String>) -> OAuthError {
    OAuthError::Rejected {
        reason,
        message: message.into(),
    }
}

/// A started authorization: where to send the browser, and what to keep until the callback.
pub struct Authorization {
    pub url: Url,
    pub pkce_verifier: String,
    pub nonce: Option<String>,
}

struct Credentials {
    id: String,
    secret: String,
}

type OAuthClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The configured providers and the HTTP client they share.
pub struct Providers {
    http: reqwest::Client,
    discord: Option<Credentials>,
    google: Option<Credentials>,
    github: Option<Credentials>,
    discord_url: Url,
    google_issuer: Url,
    github_url: Url,
    github_api_url: Url,
    discovery: RwLock<Option<(Instant, CoreProviderMetadata)>>,
    /// When the cached keys were last dropped because a token named a key they lack.
    last_forced: std::sync::Mutex<Option<Instant>>,
}

/// Least time between two refetches forced by unknown signing keys (so made-up key ids
/// cannot make us hammer the issuer).
const FORCED_REFETCH_EVERY: Duration = Duration::from_secs(60);

fn credentials(id: &Option<String>, secret: &Option<crate::config::Secret>) -> Option<Credentials> {
    Some(Credentials {
        id: id.clone()?,
        secret: secret.as_ref()?.expose().to_owned(),
    })
}

/// `base` joined with `path`, keeping any path prefix `base` has.
fn endpoint(base: &Url, path: &str) -> String {
    format!("{}{path}", base.as_str().trim_end_matches('/'))
}

impl Providers {
    pub fn new(config: &IdentityConfig) -> anyhow::Result<Self> {
        // Never follow redirects: a provider answer that redirects is an error, and following
        // one would let a hostile answer steer our requests (SSRF).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            discord: credentials(&config.discord_client_id, &config.discord_client_secret),
            google: credentials(&config.google_client_id, &config.google_client_secret),
            github: credentials(&config.github_client_id, &config.github_client_secret),
            discord_url: config.discord_url.clone(),
            google_issuer: config.google_issuer_url.clone(),
            github_url: config.github_url.clone(),
            github_api_url: config.github_api_url.clone(),
            discovery: RwLock::new(None),
            last_forced: std::sync::Mutex::new(None),
        })
    }

    fn credentials(&self, kind: AuthProviderKind) -> Result<&Credentials, OAuthError> {
        match kind {
            AuthProviderKind::Discord => self.discord.as_ref(),
            AuthProviderKind::Google => self.google.as_ref(),
            AuthProviderKind::GitHub => self.github.as_ref(),
        }
        .ok_or(OAuthError::NotConfigured(kind.label()))
    }

    /// The providers with credentials, in a stable order.
    pub fn configured(&self) -> Vec<AuthProviderKind> {
        AuthProviderKind::ALL
            .into_iter()
            .filter(|k| self.credentials(*k).is_ok())
            .collect()
    }

    fn oauth_client(
        &self,
        kind: AuthProviderKind,
        redirect_uri: &str,
    ) -> Result<OAuthClient, OAuthError> {
        let creds = self.credentials(kind)?;
        let (auth, token) = match kind {
            AuthProviderKind::Discord => (
                endpoint(&self.discord_url, "/oauth2/authorize"),
                endpoint(&self.discord_url, "/api/oauth2/token"),
            ),
            AuthProviderKind::GitHub => (
                endpoint(&self.github_url, "/login/oauth/authorize"),
                endpoint(&self.github_url, "/login/oauth/access_token"),
            ),
            AuthProviderKind::Google => unreachable!("Google goes through OpenID Connect"),
        };
        let bad_url = |e: url::ParseError| OAuthError::Provider(format!("bad endpoint URL: {e}"));
        Ok(BasicClient::new(ClientId::new(creds.id.clone()))
            .set_client_secret(ClientSecret::new(creds.secret.clone()))
            .set_auth_uri(AuthUrl::new(auth).map_err(bad_url)?)
            .set_token_uri(TokenUrl::new(token).map_err(bad_url)?)
            .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(bad_url)?))
    }

    /// The issuer's metadata, from cache or discovery.
    async fn discovered(&self) -> Result<CoreProviderMetadata, OAuthError> {
        if let Some((at, metadata)) = &*self.discovery.read().await
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(self.google_issuer.as_str().trim_end_matches('/').to_owned())
            .map_err(|e| OAuthError::Provider(format!("bad issuer URL: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OAuthError::Provider(format!("issuer discovery failed: {e}")))?;
        *self.discovery.write().await = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    /// Drops the cached metadata and keys so the next use fetches them again, at most once
    /// a minute; true when it did.
    async fn forget_keys(&self) -> bool {
        {
            let mut last = self.last_forced.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < FORCED_REFETCH_EVERY) {
                return false;
            }
            *last = Some(Instant::now());
        }
        *self.discovery.write().await = None;
        true
    }

    async fn oidc_client(
        &self,
        redirect_uri: &str,
    ) -> Result<
        CoreClient<
            EndpointSet,
            EndpointNotSet,
            EndpointNotSet,
            EndpointNotSet,
            oauth2::EndpointMaybeSet,
            oauth2::EndpointMaybeSet,
        >,
        OAuthError,
    > {
        let creds = self.credentials(AuthProviderKind::Google)?;
        let metadata = self.discovered().await?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(creds.id.clone()),
            Some(ClientSecret::new(creds.secret.clone())),
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_owned())
                .map_err(|e| OAuthError::Provider(format!("bad redirect URI: {e}")))?,
        ))
    }

    /// Starts an authorization: the provider URL carrying `state`, a fresh PKCE challenge
    /// and (OIDC) a fresh nonce.
    pub async fn authorize(
        &self,
        kind: AuthProviderKind,
        redirect_uri: &str,
        state: &str,
    ) -> Result<Authorization, OAuthError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let state_token = move || CsrfToken::new(state);
        let (url, nonce) = match kind {
            AuthProviderKind::Google => {
                let client = self.oidc_client(redirect_uri).await?;
                let (url, _, nonce) = client
                    .authorize_url(
                        AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                        state_token,
                        Nonce::new_random,
                    )
                    .add_scope(Scope::new("email".into()))
                    .add_scope(Scope::new("profile".into()))
                    .set_pkce_challenge(challenge)
                    .url();
                (url, Some(nonce.secret().clone()))
            }
            AuthProviderKind::Discord | AuthProviderKind::GitHub => {
                let scopes: &[&str] = if kind == AuthProviderKind::Discord {
                    &["identify", "email"]
                } else {
                    &["read:user", "user:email"]
                };
                let client = self.oauth_client(kind, redirect_uri)?;
                let mut request = client.authorize_url(state_token);
                for scope in scopes {
                    request = request.add_scope(Scope::new((*scope).into()));
                }
                let (url, _) = request.set_pkce_challenge(challenge).url();
                (url, None)
            }
        };
        Ok(Authorization {
            url,
            pkce_verifier: verifier.secret().clone(),
            nonce,
        })
    }

    /// Exchanges the callback's code (with the PKCE verifier and, for OIDC, the expected
    /// nonce) and returns who signed in.
    pub async fn complete(
        &self,
        kind: AuthProviderKind,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: Option<&str>,
    ) -> Result<ExternalProfile, OAuthError> {
        let code = AuthorizationCode::new(code.to_owned());
        let verifier = PkceCodeVerifier::new(pkce_verifier.to_owned());
        match kind {
            AuthProviderKind::Google => {
                let client = self.oidc_client(redirect_uri).await?;
                let response = client
                    .exchange_code(code)
                    .map_err(|e| OAuthError::Provider(format!("no token endpoint: {e}")))?
                    .set_pkce_verifier(verifier)
                    .request_async(&self.http)
                    .await
                    .map_err(token_error)?;
                let id_token = response.extra_fields().id_token().ok_or_else(|| {
                    rejected("id_token_missing", "the provider returned no ID token")
                })?;
                let expected = Nonce::new(nonce.unwrap_or_default().to_owned());
                let first = id_token
                    .claims(&client.id_token_verifier(), &expected)
                    .cloned();
                // A signature our cached keys cannot check may be from a rotated key:
                // fetch the keys again (rarely) and check once more.
                let checked = match first {
                    Err(openidconnect::ClaimsVerificationError::SignatureVerification(_))
                        if self.forget_keys().await =>
                    {
                        let client = self.oidc_client(redirect_uri).await?;
                        id_token
                            .claims(&client.id_token_verifier(), &expected)
                            .cloned()
                    }
                    other => other,
                };
                let claims = checked.map_err(|e| {
                    tracing::warn!(error = %e, "ID token refused");
                    rejected("id_token_invalid", format!("the ID token was refused: {e}"))
                })?;
                Ok(ExternalProfile {
                    kind,
                    subject: claims.subject().as_str().to_owned(),
                    email: claims.email().map(|e| e.as_str().to_lowercase()),
                    email_verified: claims.email_verified().unwrap_or(false),
                    username: None,
                    display_name: claims
                        .name()
                        .and_then(|c| c.get(None))
                        .map(|v| v.as_str().to_owned()),
                    avatar_url: claims
                        .picture()
                        .and_then(|c| c.get(None))
                        .map(|v| v.as_str().to_owned()),
                })
            }
            AuthProviderKind::Discord | AuthProviderKind::GitHub => {
                let client = self.oauth_client(kind, redirect_uri)?;
                let response = client
                    .exchange_code(code)
                    .set_pkce_verifier(verifier)
                    .request_async(&self.http)
                    .await
                    .map_err(token_error)?;
                let token = response.access_token().secret();
                if kind == AuthProviderKind::Discord {
                    self.discord_profile(token).await
                } else {
                    self.github_profile(token).await
                }
            }
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
        token: &str,
    ) -> Result<T, OAuthError> {
        let response = self
            .http
            .get(&url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| OAuthError::Provider(format!("GET {url}: {}", e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(OAuthError::Provider(format!("GET {url}: HTTP {status}")));
        }
        response
            .json()
            .await
            .map_err(|e| OAuthError::Provider(format!("GET {url}: unexpected answer: {e}")))
    }

    async fn discord_profile(&self, token: &str) -> Result<ExternalProfile, OAuthError> {
        #[derive(Deserialize)]
        struct Me {
            id: String,
            username: String,
            global_name: Option<String>,
            avatar: Option<String>,
            email: Option<String>,
            #[serde(default)]
            verified: bool,
        }
        let me: Me = self
            .get_json(endpoint(&self.discord_url, "/api/users/@me"), token)
            .await?;
        let avatar_url = me
            .avatar
            .as_ref()
            .map(|hash| format!("https://cdn.discordapp.com/avatars/{}/{hash}.png", me.id));
        Ok(ExternalProfile {
            kind: AuthProviderKind::Discord,
            subject: me.id,
            email: me.email.map(|e| e.to_lowercase()),
            // Discord's `verified` is about the account's email.
            email_verified: me.verified,
            username: Some(me.username),
            display_name: me.global_name,
            avatar_url,
        })
    }

    async fn github_profile(&self, token: &str) -> Result<ExternalProfile, OAuthError> {
        #[derive(Deserialize)]
        struct GhUser {
            id: u64,
            login: String,
            name: Option<String>,
            avatar_url: Option<String>,
        }
        #[derive(Deserialize)]
        struct GhEmail {
            email: String,
            primary: bool,
            verified: bool,
        }
        let user: GhUser = self
            .get_json(endpoint(&self.github_api_url, "/user"), token)
            .await?;
        let emails: Vec<GhEmail> = self
            .get_json(endpoint(&self.github_api_url, "/user/emails"), token)
            .await?;
        // Only the primary address counts, and only when GitHub has verified it.
        let primary = emails.into_iter().find(|e| e.primary);
        let (email, email_verified) = match primary {
            Some(e) => (Some(e.email.to_lowercase()), e.verified),
            None => (None, false),
        };
        Ok(ExternalProfile {
            kind: AuthProviderKind::GitHub,
            // The numeric id: logins can be renamed and reused.
            subject: user.id.to_string(),
            email,
            email_verified,
            username: Some(user.login),
            display_name: user.name,
            avatar_url: user.avatar_url,
        })
    }
}

/// A token-endpoint failure: refused codes are the client's problem, the rest the provider's.
fn token_error<RE, T>(err: oauth2::RequestTokenError<RE, T>) -> OAuthError
where
    RE: std::error::Error + 'static,
    T: oauth2::ErrorResponse + 'static,
{
    match err {
        oauth2::RequestTokenError::ServerResponse(response) => rejected(
            "code_rejected",
            format!("the provider refused the sign-in code: {response}"),
        ),
        // GitHub answers a bad code with HTTP 200 and an error body, which fails parsing.
        oauth2::RequestTokenError::Parse(_, body) => {
            let body = String::from_utf8_lossy(&body);
            if body.contains("\"error\"") {
                rejected("code_rejected", "the provider refused the sign-in code")
            } else {
                OAuthError::Provider("the token endpoint answered something unexpected".into())
            }
        }
        other => OAuthError::Provider(format!("token request failed: {other}")),
    }
}
