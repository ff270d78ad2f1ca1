//! Each response on a connection: counted as an open stream, for the idle
//! timeout, and held back while the connection has no room.
//!
//! A request names its connection by the local and peer addresses in its
//! connect info; the stream counts as open from the request's arrival until
//! its response body is dropped (sent in full, or cancelled). The body
//! yields its next frame only while the connection's writes have room
//! ([`crate::batched::Backlog`]): otherwise HTTP/2 would take frames for as
//! long as the client's flow-control window allows (a tonic client grants
//! 2 MiB a stream) and hold up to 400 KiB of them a stream while a client
//! that stopped reading lets nothing out.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use http_body::Frame;
use tonic::{
    codegen::Bytes,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};

use super::{Activity, Registry};

/// Counts the request's stream open on its connection while it runs, and
/// paces its response to the connection.
pub(crate) async fn count(State(registry): State<Arc<Registry>>, request: Request, next: Next) -> Response {
    let Some(open) = connection_of(&registry, &request).map(Open::new) else {
        return next.run(request).await;
    };
    let response = next.run(request).await;
    response.map(|inner| Body::new(Paced { inner, open }))
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

/// A response body that yields only while its connection has room.
struct Paced {
    inner: Body,
    open: Open,
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Some(backlog) = this.open.0.backlog() {
            ready!(backlog.poll_room(cx));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
