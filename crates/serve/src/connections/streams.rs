//! Counting each connection's open streams, for the idle timeout.
//!
//! A request names its connection by the local and peer addresses in its
//! connect info; the stream counts as open from the request's arrival until
//! its response body is dropped (sent in full, or cancelled).

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use http_body_util::BodyExt;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::{Activity, Registry};

/// Counts the request's stream open on its connection while it runs.
pub(crate) async fn count(State(registry): State<Arc<Registry>>, request: Request, next: Next) -> Response {
    let Some(open) = connection_of(&registry, &request).map(Open::new) else {
        return next.run(request).await;
    };
    let response = next.run(request).await;
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            // Held by the body until it is dropped.
            let _ = &open;
            frame
        }))
    })
}

fn connection_of(registry: &Registry, request: &Request) -> Option<Arc<Activity>> {
    let extensions = request.extensions();
    let info = extensions.get::<TcpConnectInfo>().or_else(|| {
        extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .map(|tls| tls.get_ref())
    })?;
    registry.find(info.local_addr()?, info.remote_addr()?)
}

/// One open stream, counted until dropped.
struct Open(Arc<Activity>);

impl Open {
    fn new(activity: Arc<Activity>) -> Open {
        activity.opened();
        Open(activity)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.closed();
    }
}
