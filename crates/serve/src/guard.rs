//! The door in front of every truce service. It resolves the caller before
//! any handler runs (an unknown caller never reaches one), records it in
//! the request for the handler, and watches what leaves: a status that
//! turns the caller away, whether at the door, from the handler, or at the
//! end of a stream (a revoked credential, a stalled reader), goes to the
//! rate-limited refusal log with who, which method and why. One place sees
//! every refusal, so no handler has to remember to log its own.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{
    Status,
    body::Body,
    codegen::{BoxFuture, Bytes, Service, http},
    server::NamedService,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use truce_auth::Principal;

use crate::{
    auth::Authenticator,
    refusals::{Refusal, RefusalLog, is_refusal},
};

/// A service behind the door.
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    inner: S,
    auth: Authenticator,
}

impl<S> Guarded<S> {
    /// `inner`, letting in the callers `auth` admits.
    pub(crate) fn new(inner: S, auth: Authenticator) -> Guarded<S> {
        Guarded { inner, auth }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

/// The caller's address, as the connection reported it.
pub(crate) fn remote_addr(extensions: &http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
}

/// The subject of the client certificate the TLS layer verified, if any.
pub(crate) fn certificate_subject(extensions: &http::Extensions) -> Option<String> {
    let certificates = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)?;
    crate::auth::certificate_subject(certificates.first()?.as_ref())
}

/// What a refusal line says about one call.
#[derive(Debug)]
struct Call {
    log: Arc<RefusalLog>,
    method: http::Uri,
    principal: Option<Arc<Principal>>,
    peer: Option<SocketAddr>,
}

impl Call {
    /// Logs `status` if it turns the caller away.
    fn refused(&self, status: &Status) {
        if is_refusal(status.code()) {
            self.log.note(&Refusal {
                method: self.method.path(),
                principal: self.principal.as_deref().map(|p| p.name.as_str()),
                peer: self.peer,
                code: status.code(),
                reason: status.message(),
            });
        }
    }
}

impl<S> Service<http::Request<Body>> for Guarded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Watched>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let mut call = Call {
            log: self.auth.refusal_log(),
            method: request.uri().clone(),
            principal: None,
            peer: remote_addr(request.extensions()),
        };
        let caller = self.auth.resolve_http(
            request.headers(),
            certificate_subject(request.extensions()).as_deref(),
            call.peer,
        );
        let caller = match caller {
            Ok(caller) => caller,
            Err(error) => {
                let status = Status::from(error);
                call.refused(&status);
                let response = status.into_http::<Body>().map(Watched::unwatched);
                return Box::pin(std::future::ready(Ok(response)));
            }
        };
        call.principal = caller.principal().cloned();
        request.extensions_mut().insert(caller);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            // A refusal before any message is a status in the headers.
            if let Some(status) = Status::from_header_map(response.headers()) {
                call.refused(&status);
                return Ok(response.map(Watched::unwatched));
            }
            Ok(response.map(|body| Watched {
                inner: body,
                call: Some(Box::new(call)),
            }))
        })
    }
}

/// A response body whose final status, in its trailers, is checked for a
/// refusal.
#[derive(Debug)]
pub struct Watched {
    inner: Body,
    call: Option<Box<Call>>,
}

impl Watched {
    fn unwatched(inner: Body) -> Watched {
        Watched { inner, call: None }
    }
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(trailers) = frame.trailers_ref()
            && let Some(call) = self.call.take()
            && let Some(status) = Status::from_header_map(trailers)
        {
            call.refused(&status);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
