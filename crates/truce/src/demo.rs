//! `truce demo`: the incidents of the source article (Reuters, The Media
//! Line and ynet reporting of 22 and 23 November 2025), submitted through
//! the public API as each party would. Every report carries a
//! `client_report_id`, so running the demo twice stores nothing new.

use std::str::FromStr;

use anyhow::Context;
use prost_types::Timestamp;
use truce_proto::v1::{self, ingest_service_client::IngestServiceClient};

fn time(text: &str) -> Option<Timestamp> {
    Timestamp::from_str(text).ok()
}

fn source(outlet: &str, url: &str) -> v1::Source {
    v1::Source {
        outlet: outlet.to_owned(),
        url: url.to_owned(),
        published_at: time("2025-11-23T12:00:00Z"),
    }
}

fn range(low: u32, high: u32) -> Option<v1::CountRange> {
    Some(v1::CountRange { low, best: None, high })
}

fn casualties(
    group: v1::CasualtyGroup,
    killed: Option<v1::CountRange>,
    injured: Option<v1::CountRange>,
    by: &str,
) -> v1::CasualtyClaim {
    v1::CasualtyClaim {
        group: group as i32,
        killed,
        injured,
        claimed_by: by.to_owned(),
    }
}

fn attribution(actor: &str, affiliation: &str, by: &str) -> v1::AttributionClaim {
    v1::AttributionClaim {
        actor: actor.to_owned(),
        affiliation: affiliation.to_owned(),
        claimed_by: by.to_owned(),
    }
}

/// A report of 22 November, known to the day, in a named area.
fn report(party: &str, category: v1::Category, area: &str, zone: v1::Zone, summary: &str) -> v1::Report {
    v1::Report {
        reporting_party: party.to_owned(),
        occurred_at: time("2025-11-22T12:00:00Z"),
        occurred_precision: v1::TimePrecision::Day as i32,
        location: Some(v1::Location {
            point: None,
            area: area.to_owned(),
            zone: zone as i32,
            precision: v1::LocationPrecision::Region as i32,
        }),
        category: category as i32,
        summary: summary.to_owned(),
        ..Default::default()
    }
}

/// Bearer tokens by party; empty for anonymous submission.
#[derive(Debug, Default)]
pub(crate) struct Credentials(std::collections::HashMap<String, String>);

/// The parties the demo reports for.
const PARTIES: [&str; 4] = ["idf", "hamas", "united-states", "israel"];

impl Credentials {
    /// A reporter principal per party in the principals file at `path`,
    /// created on the first run (their tokens kept in demo-tokens.json
    /// beside it, readable only by its owner) and reused after.
    pub(crate) async fn reporters(path: &std::path::Path) -> anyhow::Result<Credentials> {
        let saved = path.with_file_name("demo-tokens.json");
        if let Ok(text) = std::fs::read_to_string(&saved) {
            return Ok(Credentials(serde_json::from_str(&text)?));
        }
        let file = truce_auth::PrincipalsFile::new(path);
        let mut tokens = std::collections::HashMap::new();
        for party in PARTIES {
            let id = party.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let added = file.add(&format!("demo-{party}"), &id, &[truce_auth::Role::Reporter])?;
            tokens.insert(party.to_owned(), added.token);
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(&saved)?, serde_json::to_string(&tokens)?.as_bytes())?;
        // Running services read the changed file at the first call with a
        // token they do not know, so the new principals work at once.
        eprintln!("added reporter principals demo-{{{}}}", PARTIES.join(","));
        Ok(Credentials(tokens))
    }

    fn authorize(&self, request: &mut tonic::Request<v1::SubmitReportRequest>, party: &str) -> anyhow::Result<()> {
        if let Some(token) = self.0.get(party) {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
        }
        Ok(())
    }
}

/// Loads the article's incidents into the ingest service at `endpoint`.
pub(crate) async fn run(endpoint: &str, credentials: &Credentials) -> anyhow::Result<()> {
    use v1::{CasualtyGroup as G, Category as C, Zone as Z};
    let mut client = IngestServiceClient::connect(endpoint.to_owned())
        .await
        .with_context(|| format!("connecting to the ingest service at {endpoint}"))?;
    let mut submit = async |key: &str, report: v1::Report| -> anyhow::Result<v1::SubmitReportResponse> {
        let party = report.reporting_party.clone();
        let mut request = tonic::Request::new(v1::SubmitReportRequest {
            client_report_id: key.to_owned(),
            report: Some(report),
            signature: Vec::new(),
        });
        credentials.authorize(&mut request, &party)?;
        let response = client
            .submit_report(request)
            .await
            .with_context(|| format!("submitting {key}"))?
            .into_inner();
        println!(
            "{key:<28} {:<10} {:<10} {}",
            response.report_id,
            response.incident_id,
            if response.replayed {
                "(already stored)"
            } else if response.opened_incident {
                "(new incident)"
            } else {
                ""
            }
        );
        Ok(response)
    };
    println!("{:<28} {:<10} {:<10}", "client_report_id", "report", "incident");

    let crossing = submit(
        "demo-idf-crossing",
        v1::Report {
            sources: vec![
                source("Reuters", "https://www.reuters.com/"),
                source("ynet", "https://www.ynetnews.com/"),
            ],
            alleged_responsible: vec!["hamas".into()],
            attributions: vec![attribution("the gunman", "hamas", "idf")],
            casualties: vec![casualties(G::Combatants, range(1, 1), None, "idf")],
            ..report(
                "idf",
                C::LineCrossing,
                "Gaza Strip",
                Z::IsraeliControlled,
                "A gunman crossed the yellow line into Israeli-controlled territory in a vehicle, using a humanitarian \
             corridor meant for aid deliveries, opened fire on troops and was killed in the shoot-out.",
            )
        },
    )
    .await?;
    let incident = crossing.incident_id.clone();
    submit(
        "demo-idf-corridor",
        v1::Report {
            incident_id: incident.clone(),
            sources: vec![source("Reuters", "https://www.reuters.com/")],
            alleged_responsible: vec!["hamas".into()],
            ..report(
                "idf",
                C::CorridorMisuse,
                "Gaza Strip",
                Z::HumanitarianCorridor,
                "The attacker's vehicle entered through a humanitarian aid corridor.",
            )
        },
    )
    .await?;
    submit(
        "demo-hamas-affiliation",
        v1::Report {
            incident_id: incident.clone(),
            sources: vec![source("ynet", "https://www.ynetnews.com/")],
            attributions: vec![attribution(
                "the gunman",
                "unaffiliated: a mobile phone trader with a history of criminal activity",
                "hamas",
            )],
            ..report(
                "hamas",
                C::LineCrossing,
                "Gaza Strip",
                Z::IsraeliControlled,
                "The shooter was not a member of Hamas but an unaffiliated individual.",
            )
        },
    )
    .await?;
    submit(
        "demo-us-breach",
        v1::Report {
            incident_id: incident,
            sources: vec![source("The Media Line", "https://themedialine.org/")],
            alleged_responsible: vec!["hamas".into()],
            ..report(
                "united-states",
                C::LineCrossing,
                "Gaza Strip",
                Z::IsraeliControlled,
                "A US official said Hamas breached the ceasefire earlier in the day; its external leadership wants the \
             truce to hold but lacks real control over fighters inside Gaza.",
            )
        },
    )
    .await?;
    submit(
        "demo-idf-north-crossing",
        v1::Report {
            sources: vec![source("Reuters", "https://www.reuters.com/")],
            alleged_responsible: vec!["hamas".into()],
            casualties: vec![
                casualties(G::Combatants, range(2, 2), None, "idf"),
                casualties(G::SecurityForces, None, range(0, 0), "idf"),
            ],
            ..report(
                "idf",
                C::LineCrossing,
                "northern Gaza",
                Z::IsraeliControlled,
                "Four militants crossed the line in northern Gaza; two were killed. No soldiers were injured.",
            )
        },
    )
    .await?;
    submit("demo-idf-strikes", v1::Report {
        sources: vec![source("Reuters", "https://www.reuters.com/")],
        casualties: vec![casualties(G::Combatants, range(5, 5), None, "idf")],
        ..report(
            "idf",
            C::AirStrike,
            "Gaza Strip",
            Z::PalestinianControlled,
            "Strikes across Gaza on Hamas positions and infrastructure in response to the attack; five senior Hamas \
             members killed.",
        )
    })
    .await?;
    submit(
        "demo-hamas-strikes",
        v1::Report {
            sources: vec![
                source("Gaza Health Ministry", ""),
                source("Reuters", "https://www.reuters.com/"),
            ],
            alleged_responsible: vec!["idf".into()],
            casualties: vec![casualties(G::Unknown, range(20, 21), None, "gaza-health-ministry")],
            ..report(
                "hamas",
                C::AirStrike,
                "Gaza Strip",
                Z::PalestinianControlled,
                "Israeli air strikes killed at least 20 to 21 Palestinians, according to health officials in Gaza.",
            )
        },
    )
    .await?;
    submit(
        "demo-israel-remains",
        v1::Report {
            occurred_at: time("2025-11-23T12:00:00Z"),
            sources: vec![source("ynet", "https://www.ynetnews.com/")],
            alleged_responsible: vec!["hamas".into()],
            ..report(
                "israel",
                C::HostageRemainsWithheld,
                "Gaza Strip",
                Z::PalestinianControlled,
                "The remains of three hostages, Sgt. First Class Ran Gvili, Dror Or and Thai national Sudthisak \
             Rinthalak, have not been returned; Israeli officials believe the delay is deliberate.",
            )
        },
    )
    .await?;
    submit(
        "demo-hamas-rafah-tunnels",
        v1::Report {
            occurred_at: time("2025-11-23T12:00:00Z"),
            sources: vec![source("Reuters", "https://www.reuters.com/")],
            ..report(
                "hamas",
                C::TunnelActivity,
                "Rafah",
                Z::IsraeliControlled,
                "Fighters trapped in tunnels in Rafah; communication with them has been cut off.",
            )
        },
    )
    .await?;
    Ok(())
}
