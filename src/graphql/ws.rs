//! GraphQL over WebSocket on `/graphql/ws`, both `graphql-transport-ws` (the current
//! protocol, GraphiQL's and the SPA's) and the legacy `graphql-ws` (subscriptions-transport-ws).
//!
//! async-graphql executes each operation (`execute_stream_with_session_data`); the protocol
//! around it is ours, because the library's own connection handling differs from the
//! protocol where it matters (its refused init is 1002, a subscribe before init 1011, it has
//! no init timeout, and its keep-alive closes a client that merely listens), and because an
//! idle subscriber should cost little memory. Here:
//!
//! - `Origin` must be one of ours when a browser sends it (cross-site WebSocket hijacking);
//!   a missing subprotocol, or one we do not speak, is refused before the upgrade.
//! - Every frame is parsed here: one that is not a protocol message closes with 4400.
//! - `connection_init` must arrive within `GRAPHQL_WS_INIT_TIMEOUT` (else 4408), once (a
//!   second closes 4429); its payload is checked by [`authenticate`] (a refusal closes 4403).
//! - `subscribe` before the server's `connection_ack` closes 4401; a subscription id already
//!   in use closes 4409; more than 100 operations at once close 1008.
//! - `graphql-transport-ws`: after `GRAPHQL_WS_KEEPALIVE` of client silence the server
//!   sends `ping`; silent as long again, the connection closes with 3008.
//! - On shutdown every connection gets a 1001 close frame before the server exits.

use std::{pin::Pin, sync::Arc, task::Poll};

use async_graphql::{
    Data,
    http::{ALL_WEBSOCKET_PROTOCOLS, ClientMessage, WebSocketProtocols},
};
use futures_util::{SinkExt, StreamExt, stream::BoxStream};
use poem::{
    IntoResponse, Request, Response, handler,
    http::{StatusCode, header},
    web::{
        Data as PoemData,
        websocket::{Message, WebSocket, WebSocketStream},
    },
};
use serde::Serialize;
use tokio::sync::broadcast;

use super::{ApiError, AppSchema, RequestMeta, error::http_error};
use crate::{
    app::AppState,
    identity::auth::{
        ACCESS_COOKIE, Auth, Revocation, bearer_token, cookie, is_revoked, verify_token,
    },
};

/// Operations one connection may run at once (a client that needs more opens another).
const MAX_OPERATIONS: usize = 100;

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
    /// Silent past two keep-alive periods, a ping unanswered.
    pub const KEEPALIVE_TIMEOUT: u16 = 3008;
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

/// What the client's last frame asks of the connection.
enum Step {
    Continue,
    Close(u16, String),
}

/// A message of ours, in either protocol's words.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerMessage<'a> {
    ConnectionAck,
    /// `graphql-transport-ws`: one result of an operation.
    Next {
        id: &'a str,
        payload: &'a async_graphql::Response,
    },
    /// The legacy protocol's name for `next`.
    Data {
        id: &'a str,
        payload: &'a async_graphql::Response,
    },
    Complete {
        id: &'a str,
    },
    Ping,
    Pong,
}

impl ServerMessage<'_> {
    fn frame(&self) -> Message {
        Message::Text(serde_json::to_string(self).expect("server messages serialize"))
    }
}

/// The operations running on one connection, by client-chosen id. A connection rarely has
/// more than a few, so a vector (one small allocation) beats a map.
#[derive(Default)]
struct Operations {
    running: Vec<(String, BoxStream<'static, async_graphql::Response>)>,
    /// Where the next poll starts, so one busy operation cannot starve the others.
    start: usize,
}

impl Operations {
    fn contains(&self, id: &str) -> bool {
        self.running.iter().any(|(i, _)| i == id)
    }

    fn remove(&mut self, id: &str) -> bool {
        let before = self.running.len();
        self.running.retain(|(i, _)| i != id);
        if self.running.is_empty() {
            // An idle connection keeps no room for operations it no longer runs.
            self.running = Vec::new();
        }
        self.running.len() != before
    }

    /// The frame for the next result of any operation (`next`, or the legacy `data`), or
    /// `complete` for one that ended. Pending while none has anything.
    fn poll_frame(
        &mut self,
        protocol: WebSocketProtocols,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Message> {
        let count = self.running.len();
        for k in 0..count {
            let index = (self.start + k) % count;
            match self.running[index].1.poll_next_unpin(cx) {
                Poll::Ready(Some(payload)) => {
                    self.start = index + 1;
                    let id = &self.running[index].0;
                    let message = match protocol {
                        WebSocketProtocols::GraphQLWS => ServerMessage::Next {
                            id,
                            payload: &payload,
                        },
                        WebSocketProtocols::SubscriptionsTransportWS => ServerMessage::Data {
                            id,
                            payload: &payload,
                        },
                    };
                    return Poll::Ready(message.frame());
                }
                Poll::Ready(None) => {
                    let (id, _) = self.running.swap_remove(index);
                    if self.running.is_empty() {
                        self.running = Vec::new();
                    }
                    return Poll::Ready(ServerMessage::Complete { id: &id }.frame());
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

/// One GraphQL WebSocket: the protocol's state and the operations it runs.
struct Connection {
    state: AppState,
    schema: AppSchema,
    protocol: WebSocketProtocols,
    /// The upgrade request's facts; they go into every operation's data once signed in.
    meta: Option<RequestMeta>,
    init_seen: bool,
    /// What every operation of this connection sees (the sign-in and the request's facts),
    /// set when `connection_init` is accepted: `subscribe` is refused until then.
    data: Option<Arc<Data>>,
    operations: Operations,
    /// The session this connection signed in with; its revocation closes the socket.
    session: Option<uuid::Uuid>,
}

impl Connection {
    /// Handles one client frame; `reply` receives what must be sent back at once.
    async fn incoming(&mut self, bytes: &[u8], reply: &mut Option<Message>) -> Step {
        let bad = |what: &str| {
            Step::Close(
                close::BAD_MESSAGE,
                format!("Invalid message received: {what}"),
            )
        };
        let message = match serde_json::from_slice::<ClientMessage>(bytes) {
            Ok(message) => message,
            Err(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() => {
                return bad("not JSON");
            }
            Err(_) => return bad("not a protocol message"),
        };
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.init_seen {
                    return Step::Close(
                        close::TOO_MANY_INITS,
                        "Too many initialisation requests".into(),
                    );
                }
                self.init_seen = true;
                let payload = payload.unwrap_or(serde_json::Value::Null);
                let cookies = self.meta.as_ref().and_then(|m| m.cookies.as_deref());
                let auth = match authenticate(&self.state, cookies, &payload).await {
                    Ok(Auth::Refused(reason)) => {
                        return Step::Close(close::FORBIDDEN, format!("Forbidden: {reason}"));
                    }
                    Ok(Auth::Unavailable) => {
                        return Step::Close(close::INTERNAL, "sign-in checks unavailable".into());
                    }
                    Ok(auth) => auth,
                    Err(err) => {
                        return Step::Close(
                            close::FORBIDDEN,
                            format!("Forbidden: {}", err.message),
                        );
                    }
                };
                if let Auth::Viewer(viewer) = &auth {
                    self.session = Some(viewer.session_id);
                }
                let mut data = Data::default();
                data.insert(auth);
                if let Some(meta) = self.meta.take() {
                    data.insert(meta);
                }
                self.data = Some(Arc::new(data));
                *reply = Some(ServerMessage::ConnectionAck.frame());
            }
            ClientMessage::Start { id, payload } => {
                let Some(data) = &self.data else {
                    return Step::Close(close::UNAUTHORIZED, "Unauthorized".into());
                };
                if self.operations.contains(&id) {
                    return Step::Close(
                        close::DUPLICATE_ID,
                        format!("Subscriber for {id} already exists"),
                    );
                }
                if self.operations.running.len() >= MAX_OPERATIONS {
                    return Step::Close(close::POLICY, "Too many operations at once".into());
                }
                let stream = self
                    .schema
                    .execute_stream_with_session_data(payload, Arc::clone(data));
                self.operations.running.push((id, stream));
            }
            ClientMessage::Stop { id } => {
                if self.operations.remove(&id) {
                    *reply = Some(ServerMessage::Complete { id: &id }.frame());
                }
            }
            ClientMessage::ConnectionTerminate => return Step::Close(close::NORMAL, String::new()),
            ClientMessage::Ping { .. } => *reply = Some(ServerMessage::Pong.frame()),
            ClientMessage::Pong { .. } => {}
        }
        Step::Continue
    }
}

/// Keeps a silent `graphql-transport-ws` client honest: after `GRAPHQL_WS_KEEPALIVE` with
/// nothing from the client the server pings (clients answer pings with pongs by
/// themselves); after as long again with still nothing, the connection is closed (3008).
struct Keepalive {
    every: std::time::Duration,
    /// On the heap: a timer is large, and a connection without keep-alive has none.
    timer: Pin<Box<tokio::time::Sleep>>,
    pinged: bool,
}

impl Keepalive {
    fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            timer: Box::pin(tokio::time::sleep(every)),
            pinged: false,
        }
    }

    /// The client said something: it is alive.
    fn heard(&mut self) {
        self.pinged = false;
        let deadline = tokio::time::Instant::now() + self.every;
        self.timer.as_mut().reset(deadline);
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
    let every = state.config.graphql_ws_keepalive.0;
    let mut keepalive = (protocol == WebSocketProtocols::GraphQLWS && !every.is_zero())
        .then(|| Keepalive::new(every));
    let mut connection = Connection {
        state: state.clone(),
        schema,
        protocol,
        meta: Some(meta),
        init_seen: false,
        data: None,
        operations: Operations::default(),
        session: None,
    };
    let mut revocations = state.revocations.subscribe();
    // On the heap and dropped once `connection_init` arrived: idle connections keep no timer.
    let mut init_deadline = Some(Box::pin(tokio::time::sleep(
        state.config.graphql_ws_init_timeout.0,
    )));

    let closing: Option<(u16, String)> = loop {
        let mut reply = None;
        let step = tokio::select! {
            // Client frames first: a subscribe is checked against the ids in use before the
            // operations' answers (which free ids) are looked at.
            biased;
            _ = state.shutdown.cancelled() => Step::Close(close::GOING_AWAY, "server shutting down".into()),
            _ = async { init_deadline.as_mut().expect("guarded").await }, if init_deadline.is_some() && !connection.init_seen => {
                Step::Close(close::INIT_TIMEOUT, "Connection initialisation timeout".into())
            }
            _ = async { keepalive.as_mut().expect("guarded").timer.as_mut().await }, if keepalive.is_some() => {
                let k = keepalive.as_mut().expect("guarded");
                if k.pinged {
                    Step::Close(close::KEEPALIVE_TIMEOUT, "timeout".into())
                } else {
                    k.pinged = true;
                    let deadline = tokio::time::Instant::now() + k.every;
                    k.timer.as_mut().reset(deadline);
                    reply = Some(ServerMessage::Ping.frame());
                    Step::Continue
                }
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
            incoming = stream.next() => {
                if let Some(k) = keepalive.as_mut() {
                    k.heard();
                }
                match incoming {
                    Some(Ok(Message::Text(text))) => Box::pin(connection.incoming(text.as_bytes(), &mut reply)).await,
                    Some(Ok(Message::Binary(bytes))) => Box::pin(connection.incoming(&bytes, &mut reply)).await,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                }
            }
            frame = std::future::poll_fn(|cx| connection.operations.poll_frame(protocol, cx)) => {
                reply = Some(frame);
                Step::Continue
            }
        };
        if let Some(frame) = reply
            && sink.send(frame).await.is_err()
        {
            break None;
        }
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
