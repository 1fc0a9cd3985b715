//! `GET /billing/return?session_id=…`: back from Checkout, sync now and send the browser
//! to the plans page, so the new state shows before any webhook arrives.

use poem::{
    Response, handler,
    http::{StatusCode, header},
    web::{Data, Query},
};
use serde::Deserialize;

use crate::app::AppState;

#[derive(Deserialize)]
pub struct ReturnParams {
    session_id: Option<String>,
}

#[handler]
pub async fn checkout_return(
    Data(state): Data<&AppState>,
    Query(params): Query<ReturnParams>,
) -> Response {
    let to = match params.session_id.as_deref() {
        Some(id) => super::service::checkout_return(state, id).await,
        None => "/plans?checkout=unknown",
    };
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .header(header::CACHE_CONTROL, "no-store")
        .finish()
}
