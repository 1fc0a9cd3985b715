//! GraphQL over WebSocket on `/graphql/ws`, both `graphql-transport-ws` (the current
//! protocol, GraphiQL's and the SPA's) and the legacy `graphql-ws` (subscriptions-transport-ws).
//!
//! async-graphql runs the operations; this module owns the connection around it, because the
//! library's own handling differs from the protocol where it matters (its refused init is
//! 1002, a subscribe before init 1011, and it has no init timeout). Here:
//!
//! - `Origin` must be one of ours when a browser sends it (cross-site WebSocket hijacking);
//!   a missing subprotocol, or one we do not speak, is refused before the upgrade.
//! - Every frame is parsed here first: one that is not a protocol message closes with 4400.
//! - `connection_init` must arrive within `GRAPHQL_WS_INIT_TIMEOUT` (else 4408), once (a
//!   second closes 4429); its payload is checked by [`authenticate`] (a refusal closes 4403).
//! - `subscribe` before the server's `connection_ack` closes 4401; a subscription id already
//!   in use closes 4409.
//! - On shutdown every connection gets a 1001 close frame before the server exits.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use async_graphql::{
    Data,
    http::{ALL_WEBSOCKET_PROTOCOLS, ClientMessage, WebSocketProtocols, WsMessage},
};
use futures_util::{SinkExt, StreamExt};
use poem::{
    IntoResponse, Request, Response, handler,
    http::{StatusCode, header},
    web::{
        Data as PoemData,
        websocket::{Message, WebSocket, WebSocketStream},
    },
};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{ApiError, AppSchema, RequestMeta, error::http_error};
use crate::{
    app::AppState,
    identity::auth::{
        ACCESS_COOKIE, Auth, Revocation, bearer_token, cookie, is_revoked, verify_token,
    },
};

/// Client messages the library may have queued and not yet taken.
const IN_FLIGHT: usize = 256;

/// Close codes of the graphql-transport-ws protocol.
mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const BAD_MESSAGE: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INTERNAL: u16 = 1011;
    pub const POLICY: u16 = 1008;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const DUPLICATE_ID: u16 = 4409;
    pub const TOO_MANY_INITS: u16 = 4429;
}

fn choose_protocol(req: &Request) -> Option<WebSocketProtocols> {
    req.headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|p| p.trim().parse().ok())
}

/// The credential in a `connection_init` payload: absent, null or an object whose optional
/// `authorization` is a string (`Bearer <token>`).
fn init_authorization(payload: &serde_json::Value) -> Result<Option<String>, ApiError> {
    let authorization = match payload {
        serde_json::Value::Null => None,
        serde_json::Value::Object(map) => match map
            .get("authorization")
            .or_else(|| map.get("Authorization"))
        {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(ApiError::bad_input(
                    "invalid_authorization",
                    "`authorization` must be a string such as \"Bearer <token>\"",
                ));
            }
        },
        _ => {
            return Err(ApiError::bad_input(
                "invalid_init_payload",
                "the connection_init payload must be an object",
            ));
        }
    };
    Ok(authorization)
}

/// Authenticates a connection: the init payload's token, else the session cookie sent with
/// the upgrade. The result is what resolvers of this connection see.
async fn authenticate(
    state: &AppState,
    cookies: Option<&str>,
    payload: &serde_json::Value,
) -> Result<Auth, ApiError> {
    let token = match init_authorization(payload)? {
        Some(header) => match bearer_token(&header) {
            Some(token) => Some(token.to_owned()),
            None => {
                return Err(ApiError::bad_input(
                    "unsupported_authorization",
                    "`authorization` must be \"Bearer <token>\"",
                ));
            }
        },
        None => cookies
            .and_then(|c| cookie(c, ACCESS_COOKIE))
            .map(str::to_owned),
    };
    Ok(match token {
        Some(token) => verify_token(state, &token).await,
        None => Auth::Anonymous,
    })
}

/// `GET /graphql/ws`.
#[handler]
pub async fn endpoint(
    req: &Request,
    websocket: WebSocket,
    PoemData(state): PoemData<&AppState>,
    PoemData(schema): PoemData<&AppSchema>,
    PoemData(meta): PoemData<&RequestMeta>,
) -> Response {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !state.allowed_origins.iter().any(|o| o == origin) {
            tracing::warn!(origin, "WebSocket from a foreign origin refused");
            return http_error(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this origin may not open a GraphQL WebSocket",
            );
        }
    }
    let Some(protocol) = choose_protocol(req) else {
        return http_error(
            StatusCode::BAD_REQUEST,
            "unsupported_subprotocol",
            "request the graphql-transport-ws (or legacy graphql-ws) subprotocol",
        );
    };
    let state = state.clone();
    let schema = schema.clone();
    let meta = meta.clone();
    // Small buffers that grow on demand: the default 128 KiB read buffer, allocated up
    // front, would make every idle subscriber cost that much. Client messages are small.
    let config = poem::web::websocket::WebSocketConfig::default()
        .read_buffer_size(512)
        .write_buffer_size(0)
        .max_message_size(Some(state.config.body_limit_bytes))
        .max_frame_size(Some(state.config.body_limit_bytes));
    websocket
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .config(config)
        .on_upgrade(move |socket| serve(socket, state, schema, protocol, meta))
        .into_response()
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

enum Step {
    Continue,
    Close(u16, String),
}

struct Connection {
    state: AppState,
    cookies: Option<String>,
    protocol: WebSocketProtocols,
    init_seen: bool,
    acked: bool,
    active: HashSet<String>,
    pending_init: Arc<Mutex<Option<Data>>>,
    /// Boxed: the channel allocates its slots in blocks of 32, and an unboxed message is
    /// large; every idle connection would carry that block.
    to_library: mpsc::Sender<Box<ClientMessage>>,
    /// The session this connection signed in with; its revocation closes the socket.
    session: Option<uuid::Uuid>,
}

impl Connection {
    async fn incoming(&mut self, bytes: &[u8]) -> Step {
        let bad = |what: &str| {
            Step::Close(
                close::BAD_MESSAGE,
                format!("Invalid message received: {what}"),
            )
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            return bad("not JSON");
        };
        let Ok(message) = serde_json::from_value::<ClientMessage>(value.clone()) else {
            return bad("not a protocol message");
        };
        match &message {
            ClientMessage::ConnectionInit { payload } => {
                if self.init_seen {
                    return Step::Close(
                        close::TOO_MANY_INITS,
                        "Too many initialisation requests".into(),
                    );
                }
                self.init_seen = true;
                let payload = payload.clone().unwrap_or(serde_json::Value::Null);
                match authenticate(&self.state, self.cookies.as_deref(), &payload).await {
                    Ok(Auth::Refused(reason)) => {
                        return Step::Close(close::FORBIDDEN, format!("Forbidden: {reason}"));
                    }
                    Ok(Auth::Unavailable) => {
                        return Step::Close(close::INTERNAL, "sign-in checks unavailable".into());
                    }
                    Ok(auth) => {
                        if let Auth::Viewer(viewer) = &auth {
                            self.session = Some(viewer.session_id);
                        }
                        let mut data = Data::default();
                        data.insert(auth);
                        *self.pending_init.lock().unwrap_or_else(|e| e.into_inner()) = Some(data);
                    }
                    Err(err) => {
                        return Step::Close(
                            close::FORBIDDEN,
                            format!("Forbidden: {}", err.message),
                        );
                    }
                }
            }
            ClientMessage::Start { id, .. } => {
                if !self.acked {
                    return Step::Close(close::UNAUTHORIZED, "Unauthorized".into());
                }
                if !self.active.insert(id.clone()) {
                    return Step::Close(
                        close::DUPLICATE_ID,
                        format!("Subscriber for {id} already exists"),
                    );
                }
            }
            ClientMessage::Stop { id } => {
                self.active.remove(id);
            }
            ClientMessage::ConnectionTerminate => return Step::Close(close::NORMAL, String::new()),
            ClientMessage::Ping { .. } | ClientMessage::Pong { .. } => {}
        }
        // The library reads this channel only when the loop below polls it, so never wait
        // here: a client that has this many messages unanswered is flooding us.
        match self.to_library.try_send(Box::new(message)) {
            Ok(()) => Step::Continue,
            Err(mpsc::error::TrySendError::Full(_)) => {
                Step::Close(close::POLICY, "Too many messages in flight".into())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Step::Close(close::NORMAL, String::new()),
        }
    }

    /// Notes what the library tells the client; returns the frame to send.
    fn outgoing(&mut self, message: WsMessage) -> (Message, Option<Step>) {
        match message {
            WsMessage::Text(text) => {
                if let Ok(head) = serde_json::from_str::<Head<'_>>(&text) {
                    match head.kind.as_ref() {
                        "connection_ack" => self.acked = true,
                        "complete" => {
                            if let Some(id) = head.id {
                                self.active.remove(id.as_ref());
                            }
                        }
                        _ => {}
                    }
                }
                (Message::Text(text), None)
            }
            // The library closes on its own only for cases handled above (1002 bad message,
            // 1011 early subscribe) and the keep-alive timeout; keep the spec's codes.
            WsMessage::Close(code, reason) => {
                let code = match code {
                    1002 => close::BAD_MESSAGE,
                    1011 => close::UNAUTHORIZED,
                    other => other,
                };
                (
                    Message::close_with(code, reason.clone()),
                    Some(Step::Close(code, reason)),
                )
            }
        }
    }
}

async fn serve(
    socket: WebSocketStream,
    state: AppState,
    schema: AppSchema,
    protocol: WebSocketProtocols,
    meta: RequestMeta,
) {
    let _tracked = state.ws_tracker.token();
    state.metrics.websocket_opened();
    let span = tracing::info_span!("graphql.websocket", request_id = %meta.request_id, protocol = protocol.sec_websocket_protocol());

    let (mut sink, mut stream) = socket.split();
    let (to_library, from_socket) = mpsc::channel(IN_FLIGHT);
    let pending_init = Arc::new(Mutex::new(None::<Data>));
    let mut connection_data = Data::default();
    let meta_cookies = meta.cookies.clone();
    connection_data.insert(meta);

    let init_slot = Arc::clone(&pending_init);
    let keepalive = state.config.graphql_ws_keepalive.0;
    let library = async_graphql::http::WebSocket::from_message_stream(
        schema,
        ReceiverStream::new(from_socket).map(|message: Box<ClientMessage>| Ok(*message)),
        protocol,
    )
    .connection_data(connection_data)
    .on_connection_init(move |_payload| async move {
        init_slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| async_graphql::Error::new("connection_init was not checked"))
    })
    .keepalive_timeout(
        (protocol == WebSocketProtocols::GraphQLWS && !keepalive.is_zero()).then_some(keepalive),
    );
    futures_util::pin_mut!(library);

    let mut connection = Connection {
        state: state.clone(),
        cookies: meta_cookies,
        protocol,
        init_seen: false,
        acked: false,
        active: HashSet::new(),
        pending_init,
        to_library,
        session: None,
    };
    let mut revocations = state.revocations.subscribe();
    // On the heap and dropped once `connection_init` arrived: idle connections keep no timer.
    let mut init_deadline = Some(Box::pin(tokio::time::sleep(
        state.config.graphql_ws_init_timeout.0,
    )));

    let closing: Option<(u16, String)> = loop {
        let step = tokio::select! {
            // Client frames first: a subscribe is checked against the ids in use before the
            // library's answers (which free ids) are looked at.
            biased;
            _ = state.shutdown.cancelled() => Step::Close(close::GOING_AWAY, "server shutting down".into()),
            _ = async { init_deadline.as_mut().expect("guarded").await }, if init_deadline.is_some() && !connection.init_seen => {
                Step::Close(close::INIT_TIMEOUT, "Connection initialisation timeout".into())
            }
            revocation = revocations.recv(), if connection.session.is_some() => {
                let session = connection.session.expect("guarded above");
                let revoked = match revocation {
                    Ok(Revocation::Session(family)) => family == session,
                    // Resync, or lagged behind: ask the store about our own session.
                    Ok(Revocation::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        Box::pin(is_revoked(&state, session)).await
                    }
                    Err(broadcast::error::RecvError::Closed) => false,
                };
                if revoked {
                    Step::Close(close::FORBIDDEN, "Forbidden: session_revoked".into())
                } else {
                    Step::Continue
                }
            }
            // Boxed (here and above): this task lives as long as the connection and keeps
            // room for its largest await; sign-in checks would make every idle one bigger.
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => Box::pin(connection.incoming(text.as_bytes())).await,
                Some(Ok(Message::Binary(bytes))) => Box::pin(connection.incoming(&bytes)).await,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
            },
            outgoing = library.next() => match outgoing {
                Some(message) => {
                    let (frame, step) = connection.outgoing(message);
                    if let Some(step) = step {
                        step
                    } else if sink.send(frame).await.is_err() {
                        break None;
                    } else {
                        Step::Continue
                    }
                }
                None => Step::Close(close::NORMAL, String::new()),
            },
        };
        if let Step::Close(code, reason) = step {
            break Some((code, reason));
        }
        if connection.init_seen {
            init_deadline = None;
        }
    };
    if let Some((code, reason)) = closing {
        tracing::debug!(parent: &span, code, reason = %reason, protocol = connection.protocol.sec_websocket_protocol(), "closing GraphQL WebSocket");
        let _ = sink.send(Message::close_with(code, reason)).await;
        let _ = sink.close().await;
    }
    state.metrics.websocket_closed();
}
