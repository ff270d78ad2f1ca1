//! `truce.v1.QueryService`.

use std::{
    ops::{Bound, ControlFlow},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use tokio_stream::{Stream, StreamExt};
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::{Request, Response, Status};
use truce_domain::{IncidentId, Position, incident::IncidentSummary, listing::Order, tally::Breakdown};
use truce_proto::{
    ServiceError,
    frame::{Frame, FrameCodec, decode_frame},
    query::{self as border, Listing, Summary},
    v1::{
        self,
        query_service_server::{QueryService, QueryServiceServer},
    },
};
use truce_serve::{
    Stopping,
    admission::{Admission, Streams},
    auth::Authenticator,
    revocation::Revocation,
};

use crate::{
    QuerySettings,
    held::HeldReport,
    outbox::{Outgoing, outbox},
    state::QueryState,
    subscribe::{self, Subscription, Timeouts},
    token::{PageToken, query_digest},
};

/// The gRPC face of the query side.
#[derive(Debug, Clone)]
pub(crate) struct Queries {
    state: Arc<QueryState>,
    auth: Authenticator,
    stopping: Stopping,
    admission: Arc<Admission>,
    timeouts: Timeouts,
}

impl Queries {
    /// Opens a subscription: its frames, then its final status.
    async fn open_subscription(&self, request: Request<v1::SubscribeRequest>) -> Result<Response<Outgoing>, Status> {
        let caller = self.auth.reader(&request)?;
        let subscription = Subscription::resolve(border::subscribing(request.get_ref())?, &self.state)?;
        let permit = self.admission.admit(&caller, request.remote_addr().map(|a| a.ip()))?;
        let (out, outgoing) = outbox();
        tokio::spawn(subscribe::run(
            Arc::clone(&self.state),
            subscription,
            out,
            self.timeouts,
            self.stopping.clone(),
            permit,
            Revocation::new(self.auth.clone(), caller),
        ));
        Ok(Response::new(outgoing))
    }
}

impl Queries {
    /// Serves `state` with `settings` until `stopping`.
    pub(crate) fn new(
        state: Arc<QueryState>,
        settings: &QuerySettings,
        auth: Authenticator,
        stopping: Stopping,
    ) -> Queries {
        Queries {
            state,
            auth,
            stopping,
            admission: Admission::new(settings.caps, Streams::SUBSCRIPTIONS),
            timeouts: Timeouts {
                stall: settings.stall_timeout,
                stale: settings.stale_timeout,
            },
        }
    }
}

/// The orders `ListIncidents` offers.
/// Longest wait for the view to reach a requested position.
pub(crate) const MAX_POSITION_WAIT: Duration = Duration::from_secs(10);

/// How long before a caller's deadline a wait gives up, so the answer
/// (DEADLINE_EXCEEDED, with the reason) still reaches it in time.
const DEADLINE_MARGIN: Duration = Duration::from_millis(20);

impl Queries {
    /// Waits until the view has applied `min_position` (0: no wait).
    /// Waits until the view has applied `min_position`: up to
    /// [`MAX_POSITION_WAIT`] (then UNAVAILABLE: retry), or until shortly
    /// before the caller's `deadline` (then DEADLINE_EXCEEDED), whichever
    /// comes first.
    async fn reach(&self, min_position: u64, deadline: Option<Duration>) -> Result<(), ServiceError> {
        if min_position == 0 {
            return Ok(());
        }
        // Answer before the deadline, so the caller hears why.
        let before_deadline = deadline.map(|d| d.saturating_sub(DEADLINE_MARGIN));
        let wait = before_deadline.map_or(MAX_POSITION_WAIT, |d| d.min(MAX_POSITION_WAIT));
        let mut applied = self.state.applied.subscribe();
        let reached = tokio::time::timeout(wait, applied.wait_for(|p| p.0 >= min_position)).await;
        let at = self.state.applied.borrow().0;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ if before_deadline.is_some_and(|d| d <= MAX_POSITION_WAIT) => Err(ServiceError::DeadlineExceeded(
                format!("the view did not reach position {min_position} before the deadline (it is at {at})"),
            )),
            _ => Err(ServiceError::Unavailable(format!(
                "the view has not reached position {min_position} yet (it is at {at}); retry"
            ))),
        }
    }
}

type ChangeStream = Pin<Box<dyn Stream<Item = Result<v1::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl QueryService for Queries {
    async fn get_incident(
        &self,
        request: Request<v1::GetIncidentRequest>,
    ) -> Result<Response<v1::GetIncidentResponse>, Status> {
        self.auth.reader(&request)?;
        let deadline = truce_serve::deadline(&request);
        let lookup = border::incident_lookup(request.get_ref())?;
        self.reach(lookup.min_position.0, deadline).await?;
        let id = lookup.id;
        let view = self.state.read_view();
        let incident = view
            .incident(id)
            .ok_or_else(|| ServiceError::NotFound {
                kind: "incident",
                id: id.to_string(),
            })?
            .decode()
            .map_err(ServiceError::Internal)?;
        Ok(Response::new(v1::GetIncidentResponse {
            incident: Some(v1::Incident::from(&incident)),
            position: view.position().0,
        }))
    }

    async fn get_report(
        &self,
        request: Request<v1::GetReportRequest>,
    ) -> Result<Response<v1::GetReportResponse>, Status> {
        self.auth.reader(&request)?;
        let deadline = truce_serve::deadline(&request);
        let lookup = border::report_lookup(request.get_ref())?;
        self.reach(lookup.min_position.0, deadline).await?;
        let id = lookup.id;
        let view = self.state.read_view();
        let (incident, report) = view
            .incident_of(id)
            .and_then(|incident| Some((incident, incident.report(id)?)))
            .ok_or_else(|| ServiceError::NotFound {
                kind: "report",
                id: id.to_string(),
            })?;
        let wire = |held: &HeldReport| {
            held.report()
                .map(|r| v1::StoredReport::from(r.as_ref()))
                .map_err(ServiceError::Internal)
        };
        let earlier_versions = incident.earlier_versions_of(id).map(wire).collect::<Result<_, _>>()?;
        Ok(Response::new(v1::GetReportResponse {
            report: Some(wire(report)?),
            position: view.position().0,
            earlier_versions,
        }))
    }

    async fn list_incidents(
        &self,
        request: Request<v1::ListIncidentsRequest>,
    ) -> Result<Response<v1::ListIncidentsResponse>, Status> {
        self.auth.reader(&request)?;
        let deadline = truce_serve::deadline(&request);
        let Listing {
            filter,
            order,
            order_by,
            page_size,
            page_token,
            min_position,
        } = border::listing(request.get_ref())?;
        self.reach(min_position.0, deadline).await?;
        let digest = query_digest(filter.text(), &order_by);
        let token = page_token.map(|text| PageToken::decode(&text, &digest)).transpose()?;
        // Every page reflects the position of the first: incidents changed
        // since are judged as they stood then, read back from the log.
        // Listings in opening order stop at the first incident past the
        // page.
        let stops_early = order.by_opening();
        let (position, mut page, changed) = {
            let view = self.state.read_view();
            let position = token.as_ref().map_or(view.position(), |t| t.position);
            let up_to = IncidentId(position);
            let ids = match (order, &token) {
                (Order::Opened, Some(t)) => (Bound::Excluded(IncidentId(Position(t.after.1))), Bound::Included(up_to)),
                (Order::OpenedDesc, Some(t)) => (Bound::Unbounded, Bound::Excluded(IncidentId(Position(t.after.1)))),
                _ => (Bound::Unbounded, Bound::Included(up_to)),
            };
            let mut page: Vec<((i128, u64), Arc<IncidentSummary>)> = Vec::new();
            view.visit_candidates(&filter, ids, order == Order::OpenedDesc, |summary| {
                if summary.updated_position > position {
                    return ControlFlow::Continue(()); // judged below, as of then
                }
                let key = order.key(summary);
                if filter.matches(summary) && token.as_ref().is_none_or(|t| key > t.after) {
                    page.push((key, Arc::clone(summary)));
                    if stops_early && page.len() > page_size {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            });
            (position, page, view.changed_since(position))
        };
        for current in changed {
            let Some(summary) = self
                .state
                .as_of(current, position)
                .await
                .map_err(|e| ServiceError::Internal(e.to_string()))?
            else {
                continue;
            };
            let key = order.key(&summary);
            if filter.matches(&summary) && token.as_ref().is_none_or(|t| key > t.after) {
                page.push((key, summary));
            }
        }
        page.sort_unstable_by_key(|(key, _)| *key);
        let more = page.len() > page_size;
        page.truncate(page_size);
        let next_page_token = match (more, page.last()) {
            (true, Some((key, _))) => PageToken {
                query: digest,
                position,
                after: *key,
            }
            .encode(),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListIncidentsResponse {
            incidents: page
                .iter()
                .map(|(_, s)| v1::IncidentSummary::from(s.as_ref()))
                .collect(),
            next_page_token,
            position: position.0,
        }))
    }

    type SubscribeStream = ChangeStream;

    /// Served by [`Routes`] from frames; this decodes them again, for a
    /// server built from the generated service alone.
    async fn subscribe(&self, request: Request<v1::SubscribeRequest>) -> Result<Response<ChangeStream>, Status> {
        let frames = self.open_subscription(request).await?.into_inner();
        let messages = frames.map(|frame| frame.and_then(|f| decode_frame::<v1::SubscribeResponse>(&f)));
        Ok(Response::new(Box::pin(messages)))
    }

    async fn summarize(
        &self,
        request: Request<v1::SummarizeRequest>,
    ) -> Result<Response<v1::SummarizeResponse>, Status> {
        self.auth.reader(&request)?;
        let deadline = truce_serve::deadline(&request);
        let Summary {
            filter,
            start,
            end,
            min_position,
        } = border::summary(request.get_ref())?;
        self.reach(min_position.0, deadline).await?;
        let view = self.state.read_view();
        let mut breakdown = Breakdown::default();
        for s in view.summaries() {
            if s.occurred_to >= start && s.occurred_from < end && filter.matches(s) {
                breakdown.add(s);
            }
        }
        Ok(Response::new(border::summarized(&breakdown, view.position())))
    }
}

/// The query service as mounted: `Subscribe` answered from frames (a change
/// is encoded once, whatever the number of subscribers it reaches), every
/// other call by the generated server.
#[derive(Clone)]
pub(crate) struct Routes {
    queries: Arc<Queries>,
    generated: QueryServiceServer<Queries>,
    max_request_bytes: usize,
}

impl Routes {
    /// Serves `queries`, refusing requests larger than `max_request_bytes`.
    pub(crate) fn new(queries: Queries, max_request_bytes: usize) -> Routes {
        let queries = Arc::new(queries);
        Routes {
            generated: QueryServiceServer::from_arc(Arc::clone(&queries)).max_decoding_message_size(max_request_bytes),
            queries,
            max_request_bytes,
        }
    }
}

impl tonic::server::NamedService for Routes {
    const NAME: &'static str = <QueryServiceServer<Queries> as tonic::server::NamedService>::NAME;
}

const SUBSCRIBE_PATH: &str = "/truce.v1.QueryService/Subscribe";

impl<B> Service<http::Request<B>> for Routes
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != SUBSCRIBE_PATH {
            return self.generated.call(request);
        }
        let queries = Arc::clone(&self.queries);
        // The same limit as every other call (tonic's own is 4 MiB).
        let max_request_bytes = self.max_request_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(FrameCodec::<v1::SubscribeRequest>::default())
                .max_decoding_message_size(max_request_bytes);
            Ok(grpc.server_streaming(OpenSubscription(queries), request).await)
        })
    }
}

/// `Subscribe` as a streaming call of frames.
struct OpenSubscription(Arc<Queries>);

impl tonic::server::ServerStreamingService<v1::SubscribeRequest> for OpenSubscription {
    type Response = Frame;
    type ResponseStream = Outgoing;
    type Future = BoxFuture<Response<Outgoing>, Status>;

    fn call(&mut self, request: Request<v1::SubscribeRequest>) -> Self::Future {
        let queries = Arc::clone(&self.0);
        Box::pin(async move { queries.open_subscription(request).await })
    }
}
