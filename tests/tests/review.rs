//! The review from the side of those who would bend it: the accused, or a
//! mediator, naming every other mediator responsible does not stop them
//! ruling; one mediator can neither wipe the others' rulings nor overturn
//! a quorum's finding; every ruling stays on the record.

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
    let mediators = ["egypt", "qatar", "turkey", "united-states"];
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
    // The last mediator reports on the incident too, naming the others: it
    // recuses itself, and only itself.
    let mut accusation = crossing_report();
    accusation.reporting_party = "united-states".into();
    accusation.incident_id = opened.incident_id.clone();
    accusation.alleged_responsible = mediators[..3].iter().map(|m| (*m).to_owned()).collect();
    let us_desk = add("us-desk", "united-states", Role::Reporter);
    ingest
        .submit_report(with_token(&us_desk, request("", accusation)))
        .await
        .unwrap();
    let recused = ingest
        .review_incident(with_token(&monitors[3], review(IncidentStatus::NotABreach, "")))
        .await
        .unwrap_err();
    assert_eq!(recused.code(), Code::PermissionDenied, "{recused:?}");

    // The mediators still rule. One confirms; another's different finding
    // does not wipe that ruling; a second confirmation makes the quorum.
    let first = ingest
        .review_incident(with_token(
            &monitors[0],
            review(IncidentStatus::ConfirmedBreach, "hamas"),
        ))
        .await
        .expect("a mediator named by the accused still rules")
        .into_inner()
        .incident
        .unwrap();
    assert_eq!(first.status, IncidentStatus::UnderReview as i32);
    let disputed = ingest
        .review_incident(with_token(&monitors[2], review(IncidentStatus::Disputed, "")))
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    assert_eq!(disputed.status, IncidentStatus::UnderReview as i32);
    assert_eq!(disputed.confirmations.len(), 1, "one ruling does not clear another");
    ingest
        .review_incident(with_token(
            &monitors[1],
            review(IncidentStatus::ConfirmedBreach, "hamas"),
        ))
        .await
        .unwrap();
    // A third finds otherwise: its ruling is recorded, the finding stands.
    let recorded = ingest
        .review_incident(with_token(&monitors[2], review(IncidentStatus::NotABreach, "")))
        .await
        .expect("a dissent is recorded")
        .into_inner();
    let dissent = recorded.incident.unwrap();
    assert_eq!(dissent.status, IncidentStatus::ConfirmedBreach as i32);
    assert_eq!(dissent.found_responsible, "hamas");
    assert_eq!(dissent.confirmations.len(), 2);
    assert!(
        dissent.rulings.contains(&v1::Ruling {
            mediator_party: "turkey".into(),
            status: IncidentStatus::NotABreach as i32,
            responsible_party: String::new(),
        }),
        "{:?}",
        dissent.rulings
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
    assert_eq!(reviewers, ["egypt", "turkey", "qatar", "turkey"]);
    assert_eq!(incident.summary.unwrap().status, IncidentStatus::ConfirmedBreach as i32);
    s.pair.stop().await;
}
