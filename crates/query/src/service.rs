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
use truce_domain::{
    IncidentId, Position, ReportId, Timestamp,
    filter::Filter,
    incident::IncidentSummary,
    tally::{Breakdown, Tally},
};
use truce_proto::{
    ServiceError,
    convert::timestamp_from_wire,
    frame::{Frame, FrameCodec, decode_frame},
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

/// Page size when none is asked for.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page.
pub(crate) const MAX_PAGE_SIZE: usize = 1000;

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
        let subscription = Subscription::from_request(request.get_ref(), &self.state)?;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Opened,
    OpenedDesc,
    UpdatedDesc,
    OccurredDesc,
    KilledHighDesc,
}

impl Order {
    fn parse(text: &str) -> Result<Order, ServiceError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            [] | ["opened"] | ["opened", "asc"] => Ok(Order::Opened),
            ["opened", "desc"] => Ok(Order::OpenedDesc),
            ["updated", "desc"] => Ok(Order::UpdatedDesc),
            ["occurred", "desc"] => Ok(Order::OccurredDesc),
            ["killed_high", "desc"] => Ok(Order::KilledHighDesc),
            _ => Err(ServiceError::invalid(
                "order_by",
                "must be one of \"opened\", \"opened desc\", \"updated desc\", \"occurred desc\", \"killed_high desc\"",
            )),
        }
    }

    /// Ascending sort key; the incident id breaks ties, so keys are unique.
    fn key(self, s: &IncidentSummary) -> (i128, u64) {
        let id = s.id.0.0;
        let primary = match self {
            Order::Opened => i128::from(id),
            Order::OpenedDesc => -i128::from(id),
            Order::UpdatedDesc => -i128::from(s.updated_position.0),
            Order::OccurredDesc => -i128::from(s.occurred_to.0),
            Order::KilledHighDesc => -i128::from(s.killed.map_or(0, |k| k.high())),
        };
        (primary, id)
    }
}

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

fn parse_filter(text: &str) -> Result<Filter, ServiceError> {
    Filter::parse(text).map_err(|e| ServiceError::invalid("filter", e.to_string()))
}

fn tally_to_wire(t: &Tally) -> v1::Tally {
    let range = |r: Option<truce_domain::report::CountRange>| {
        r.map(|r| v1::CountRange {
            low: r.low(),
            best: r.best(),
            high: r.high(),
        })
    };
    v1::Tally {
        incidents: t.incidents,
        killed: range(t.killed),
        injured: range(t.injured),
    }
}

fn keyed<K: ToString>(map: &std::collections::BTreeMap<K, Tally>) -> Vec<v1::KeyedTally> {
    map.iter()
        .map(|(key, tally)| v1::KeyedTally {
            key: key.to_string(),
            tally: Some(tally_to_wire(tally)),
        })
        .collect()
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
        let request = request.into_inner();
        self.reach(request.min_position, deadline).await?;
        let text = request.incident_id;
        let id: IncidentId = text
            .parse()
            .map_err(|rule| ServiceError::invalid("incident_id", rule))?;
        let view = self.state.read_view();
        let incident = view
            .incident(id)
            .ok_or(ServiceError::NotFound {
                kind: "incident",
                id: text,
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
        let request = request.into_inner();
        self.reach(request.min_position, deadline).await?;
        let text = request.report_id;
        let id: ReportId = text.parse().map_err(|rule| ServiceError::invalid("report_id", rule))?;
        let view = self.state.read_view();
        let (incident, report) = view
            .incident_of(id)
            .and_then(|incident| Some((incident, incident.report(id)?)))
            .ok_or(ServiceError::NotFound {
                kind: "report",
                id: text,
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
        let request = request.into_inner();
        let filter = parse_filter(&request.filter)?;
        let order = Order::parse(&request.order_by)?;
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(ServiceError::invalid("page_size", "must not be negative").into()),
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        self.reach(request.min_position, deadline).await?;
        let digest = query_digest(filter.text(), &request.order_by);
        let token = if request.page_token.is_empty() {
            None
        } else {
            Some(PageToken::decode(&request.page_token, &digest)?)
        };
        // Every page reflects the position of the first: incidents changed
        // since are judged as they stood then, read back from the log.
        // Listings in opening order stop at the first incident past the
        // page.
        let stops_early = matches!(order, Order::Opened | Order::OpenedDesc);
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
        let request = request.into_inner();
        let filter = parse_filter(&request.filter)?;
        let bound = |field: &str, t: &Option<prost_types::Timestamp>| {
            t.as_ref()
                .map(|t| timestamp_from_wire(t).map_err(|rule| ServiceError::invalid(field, rule)))
                .transpose()
        };
        let start = bound("occurred_start", &request.occurred_start)?.unwrap_or(Timestamp(i64::MIN));
        let end = bound("occurred_end", &request.occurred_end)?.unwrap_or(Timestamp(i64::MAX));
        if end <= start {
            return Err(ServiceError::invalid("occurred_end", "must be after occurred_start").into());
        }
        self.reach(request.min_position, deadline).await?;
        let view = self.state.read_view();
        let mut breakdown = Breakdown::default();
        for s in view.summaries() {
            if s.occurred_to >= start && s.occurred_from < end && filter.matches(s) {
                breakdown.add(s);
            }
        }
        Ok(Response::new(v1::SummarizeResponse {
            total: Some(tally_to_wire(&breakdown.total)),
            by_category: keyed(&breakdown.by_category),
            by_zone: keyed(&breakdown.by_zone),
            by_reporter: keyed(&breakdown.by_reporter),
            by_responsible: keyed(&breakdown.by_responsible),
            by_status: keyed(&breakdown.by_status),
            position: view.position().0,
        }))
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
