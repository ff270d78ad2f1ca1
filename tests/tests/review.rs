//! The review from the side of the party under review: naming every
//! mediator responsible does not stop the mediators ruling, and one
//! mediator cannot overturn a quorum's confirmed breach on its own; every
//! attempt stays on the record.

use tonic::Code;
use truce_auth::Role;
use truce_proto::v1::{self, IncidentStatus};
use truce_tests::{
    crossing_report, request,
    secure::{secure_pair, with_token},
};

#[tokio::test]
async fn the_accused_can_neither_freeze_nor_overturn_the_review() {
    let s = secure_pair().await;
    let add = |name: &str, party: &str, role| s.file.add(name, &party.parse().unwrap(), &[role]).unwrap().token;
    let hamas = add("hamas-desk", "hamas", Role::Reporter);
    let mediators = ["egypt", "qatar", "turkey"];
    let monitors: Vec<String> = mediators
        .iter()
        .map(|party| add(&format!("{party}-monitor"), party, Role::Monitor))
        .collect();
    let mut ingest = s.pair.ingest_client().await;
    let mut query = s.pair.query_client().await;

    // idf reports a crossing and names hamas.
    let opened = ingest
        .submit_report(with_token(&s.idf, request("", crossing_report())))
        .await
        .unwrap()
        .into_inner();
    // hamas attaches its own account to the incident, naming every mediator
    // party responsible.
    let mut counter = crossing_report();
    counter.reporting_party = "hamas".into();
    counter.incident_id = opened.incident_id.clone();
    counter.summary = "The mediators' own forces crossed the line.".into();
    counter.alleged_responsible = mediators.iter().map(|m| (*m).to_owned()).collect();
    counter.attributions.clear();
    counter.casualties.clear();
    let attached = ingest
        .submit_report(with_token(&hamas, request("", counter)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(attached.incident_id, opened.incident_id);

    let review = |status: IncidentStatus, responsible: &str| v1::ReviewIncidentRequest {
        incident_id: opened.incident_id.clone(),
        status: status as i32,
        finding: "The crossing is on camera.".into(),
        responsible_party: responsible.into(),
    };
    // The mediators still rule, and two of them confirm the breach.
    for monitor in &monitors[..2] {
        ingest
            .review_incident(with_token(monitor, review(IncidentStatus::ConfirmedBreach, "hamas")))
            .await
            .expect("a mediator named by the accused still rules");
    }
    // The third finds otherwise: its call is recorded, the finding stands.
    let recorded = ingest
        .review_incident(with_token(&monitors[2], review(IncidentStatus::NotABreach, "")))
        .await
        .expect("a dissent is recorded")
        .into_inner();
    let dissent = recorded.incident.unwrap();
    assert_eq!(dissent.status, IncidentStatus::ConfirmedBreach as i32);
    assert_eq!(dissent.found_responsible, "hamas");
    assert_eq!(dissent.confirmations.len(), 2);
    assert_eq!(
        dissent.reconsiderations,
        vec![v1::Reconsideration {
            mediator_party: "turkey".into(),
            status: IncidentStatus::NotABreach as i32,
            responsible_party: String::new(),
        }]
    );

    // The accused party itself may not rule, and every ruling is in the
    // incident's history.
    let hamas_monitor = add("hamas-liaison", "hamas", Role::Monitor);
    let refused = ingest
        .review_incident(with_token(&hamas_monitor, review(IncidentStatus::NotABreach, "")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let incident = query
        .get_incident(with_token(
            &s.admin,
            v1::GetIncidentRequest {
                incident_id: opened.incident_id.clone(),
                min_position: recorded.position,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    let reviewers: Vec<&str> = incident.reviews.iter().map(|r| r.reviewer_party.as_str()).collect();
    assert_eq!(reviewers, mediators);
    assert_eq!(incident.summary.unwrap().status, IncidentStatus::ConfirmedBreach as i32);
    s.pair.stop().await;
}
