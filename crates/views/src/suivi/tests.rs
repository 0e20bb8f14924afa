//! Suivi v2 documents: their content, and the contract test against La Poste's published
//! OpenAPI description (tests/fixtures/laposte-suivi-v2-openapi.json, source in the README
//! beside it).

use serde_json::{Value, json};

use super::contract::{BASE, Contract, INVALID, NOT_FOUND, SHIPMENT_ITEM};
use super::*;
use crate::testing::{tn, view};

fn json_of(doc: &SuiviDocument) -> Value {
    serde_json::from_slice(&doc.body).expect("valid JSON")
}

#[test]
fn a_found_parcel_reads_like_la_postes_answer() {
    let v = view(&["DR1", "PC1", "ET1", "MD2", "DI1"]);
    let doc = one(Lookup::Found(&v), Lang::Fr, "https://suivi.example.fr");
    assert_eq!(doc.status, 200);
    let body = json_of(&doc);
    assert_eq!(body["lang"], "fr_FR");
    assert_eq!(body["scope"], "open");
    assert_eq!(body["returnCode"], 200);
    assert!(body.get("returnMessage").is_none());
    let s = &body["shipment"];
    assert_eq!(s["idShip"], "6A12345678905");
    assert_eq!(s["holder"], 4);
    assert_eq!(s["product"], "colissimo");
    assert_eq!(s["isFinal"], true);
    // Paris local time with its offset, as La Poste writes dates.
    assert_eq!(s["entryDate"], "2025-12-20T11:00:00+01:00");
    assert_eq!(s["deliveryDate"], "2025-12-20T20:00:00+01:00");
    assert_eq!(s["url"], "https://suivi.example.fr/fr/track/6A12345678905");
    let events = s["event"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(
        events[0],
        json!({"code": "DI1", "label": "Votre colis est livré.", "date": "2025-12-20T20:00:00+01:00"})
    );
    assert_eq!(events[4]["code"], "DR1");
    let timeline = s["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 5);
    for (i, step) in timeline.iter().enumerate() {
        assert_eq!(step["id"], i + 1);
        assert_eq!(step["status"], true);
        assert_eq!(step["type"], 1);
    }
    assert_eq!(timeline[4]["shortLabel"], "Livré");
    assert_eq!(timeline[4]["longLabel"], "Votre colis est livré.");
    assert_eq!(timeline[4]["date"], "2025-12-20T20:00:00+01:00");
    assert_eq!(timeline[0]["date"], "2025-12-20T08:00:00+01:00");
}

#[test]
fn a_parcel_on_its_way_marks_the_steps_ahead_and_problems() {
    let v = view(&["PC1", "ET1", "PB1"]);
    let body = json_of(&one(Lookup::Found(&v), Lang::En, ""));
    assert_eq!(body["lang"], "en_GB");
    let s = &body["shipment"];
    assert_eq!(s["isFinal"], false);
    assert!(s.get("deliveryDate").is_none());
    assert_eq!(s["url"], "/en/track/6A12345678905");
    let timeline = s["timeline"].as_array().unwrap();
    let status: Vec<bool> = timeline
        .iter()
        .map(|t| t["status"].as_bool().unwrap())
        .collect();
    assert_eq!(status, [true, true, true, false, false]);
    assert_eq!(timeline[2]["type"], -1);
    assert_eq!(timeline[2]["shortLabel"], "Problem being dealt with");
    assert_eq!(
        timeline[0].get("date"),
        None,
        "no DR1: step 1 was never dated"
    );
    assert_eq!(timeline[3].get("date"), None);
    assert_eq!(
        s["event"][0]["label"],
        "Something has happened to your parcel. We are working to sort it out."
    );
}

#[test]
fn unknown_products_have_no_holder_and_are_given_as_stored() {
    let mut v = view(&["PC1"]);
    v.product = Some("international".into());
    let body = json_of(&one(Lookup::Found(&v), Lang::Fr, ""));
    assert!(body["shipment"].get("holder").is_none());
    assert_eq!(body["shipment"]["product"], "international");
    v.product = None;
    let body = json_of(&one(Lookup::Found(&v), Lang::Fr, ""));
    assert!(body["shipment"].get("product").is_none());
}

#[test]
fn refusals_carry_la_postes_codes_and_messages() {
    let number = tn();
    let doc = one(Lookup::NotFound(&number), Lang::Fr, "");
    assert_eq!(doc.status, 404);
    assert_eq!(
        json_of(&doc),
        json!({"lang": "fr_FR", "scope": "open", "returnCode": 104,
               "returnMessage": "Votre suivi n'est pas encore disponible. Si vous avez déposé votre envoi, les informations de suivi peuvent être affichées avec un délai, veuillez réessayer ultérieurement.",
               "idShip": "6A12345678905"})
    );
    let doc = one(Lookup::Invalid { id: " 6A123 " }, Lang::De, "");
    assert_eq!(doc.status, 400);
    let body = json_of(&doc);
    assert_eq!(body["returnCode"], 400);
    assert_eq!(body["idShip"], "6A123");
    assert_eq!(body["lang"], "de_DE");
    assert!(
        body["returnMessage"]
            .as_str()
            .unwrap()
            .starts_with("Die eingegebene Nummer ist ungültig.")
    );
    let doc = one(Lookup::Unavailable(&number), Lang::Nl, "");
    assert_eq!(doc.status, 503);
    assert_eq!(json_of(&doc)["returnCode"], 504);
}

#[test]
fn a_refused_identifier_is_repeated_back_cut_and_neutralised() {
    let hostile = format!("\u{202e}{}\u{0}", "A".repeat(500));
    let body = json_of(&one(Lookup::Invalid { id: &hostile }, Lang::Fr, ""));
    let echoed = body["idShip"].as_str().unwrap();
    assert_eq!(echoed.chars().count(), MAX_ECHOED_ID_CHARS);
    assert!(echoed.starts_with('\u{fffd}'));
    assert!(!echoed.contains('\u{202e}'));
}

#[test]
fn several_numbers_answer_207_with_one_envelope_each() {
    let v = view(&["PC1", "MD2"]);
    let number = tn();
    let doc = many(
        &[
            Lookup::Found(&v),
            Lookup::NotFound(&number),
            Lookup::Invalid { id: "x" },
        ],
        Lang::It,
        "",
    );
    assert_eq!(doc.status, 207);
    let body = json_of(&doc);
    let items = body.as_array().unwrap();
    let codes: Vec<i64> = items
        .iter()
        .map(|i| i["returnCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [200, 104, 400]);
    assert!(
        items
            .iter()
            .all(|i| i["lang"] == "it_IT" && i["scope"] == "open")
    );
    assert_eq!(
        items[0]["shipment"]["event"][0]["label"],
        "Il suo pacco è in consegna."
    );
}

#[test]
fn the_identifier_list_is_bounded() {
    assert_eq!(split_idships("6A12345678905"), Ok(vec!["6A12345678905"]));
    assert_eq!(split_idships("A,B,,C"), Ok(vec!["A", "B", "", "C"]));
    assert_eq!(split_idships(""), Err(IdShipsError::Empty));
    assert_eq!(split_idships("  "), Err(IdShipsError::Empty));
    let ten = ["X"; MAX_IDSHIPS].join(",");
    assert_eq!(split_idships(&ten).map(|v| v.len()), Ok(MAX_IDSHIPS));
    let eleven = ["X"; MAX_IDSHIPS + 1].join(",");
    assert_eq!(split_idships(&eleven), Err(IdShipsError::TooMany));
    let flood = ",".repeat(1 << 20);
    assert_eq!(split_idships(&flood), Err(IdShipsError::TooMany));
}

// ---- The contract test: every field and type emitted, against La Poste's OpenAPI. ----

/// Views covering every code, every step and tone, with and without product and places.
fn sample_views() -> Vec<rempart_domain::ParcelView> {
    let histories: &[&[&str]] = &[
        &["DR1"],
        &["DR1", "PC1", "ET1", "ET1", "MD2", "DI1"],
        &[
            "PC2", "ET2", "ET4", "ET3", "DO1", "DO3", "DO2", "EP1", "MD2", "ND1", "AG1", "DI1",
        ],
        &["PC1", "ET1", "PB1", "PB2", "MD2", "ND1", "RE1", "DI2"],
    ];
    let mut views: Vec<_> = histories.iter().map(|h| view(h)).collect();
    let mut bare = view(&["PC1", "ET1"]);
    bare.product = None;
    bare.events.iter_mut().for_each(|e| e.location = None);
    views.push(bare);
    for (product, v) in ["chronopost", "lettre-suivie", "international"]
        .iter()
        .zip(views.iter_mut())
    {
        v.product = Some((*product).into());
    }
    views
}

#[test]
fn every_field_and_type_matches_la_postes_openapi() {
    let contract = Contract::new();
    let number = tn();
    for lang in Lang::ALL {
        for v in sample_views() {
            let doc = json_of(&one(Lookup::Found(&v), lang, "https://suivi.example.fr"));
            assert_eq!(
                contract.errors(SHIPMENT_ITEM, &doc),
                Vec::<String>::new(),
                "{lang:?} {doc}"
            );
        }
        let doc = json_of(&one(Lookup::NotFound(&number), lang, ""));
        assert_eq!(
            contract.errors(NOT_FOUND, &doc),
            Vec::<String>::new(),
            "{doc}"
        );
        let doc = json_of(&one(Lookup::Unavailable(&number), lang, ""));
        assert_eq!(
            contract.errors(NOT_FOUND, &doc),
            Vec::<String>::new(),
            "{doc}"
        );
        // The one known gap: La Poste's response400 gives 400 as returnCode's example while its
        // baseResponse enum does not list 400. Rempart sends 400, as La Poste's answers do.
        let doc = json_of(&one(Lookup::Invalid { id: "6A123" }, lang, ""));
        let errors = contract.errors(INVALID, &doc);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("$.returnCode: 400 is not one of"),
            "{errors:?}"
        );
    }
}

#[test]
fn a_207_body_is_an_array_of_unitary_answers() {
    let contract = Contract::new();
    // The 207 response is described as an array of unitary responses.
    let described =
        contract.pointer("/components/responses/response207g/content/application~1json/schema");
    assert_eq!(described["type"], "array");
    let views = sample_views();
    let number = tn();
    let mut lookups: Vec<Lookup<'_>> = views.iter().map(Lookup::Found).collect();
    lookups.push(Lookup::NotFound(&number));
    let body = json_of(&many(&lookups, Lang::Es, ""));
    let items = body.as_array().unwrap();
    assert_eq!(items.len(), lookups.len());
    for item in items {
        let schema = if item["returnCode"] == 200 {
            SHIPMENT_ITEM
        } else {
            NOT_FOUND
        };
        assert_eq!(
            contract.errors(schema, item),
            Vec::<String>::new(),
            "{item}"
        );
    }
}

#[test]
fn the_validator_catches_what_it_should() {
    // The contract test is only as good as its validator: feed it documents that break the
    // published schema in each way it checks.
    let contract = Contract::new();
    let v = view(&["PC1", "MD2"]);
    let good = json_of(&one(Lookup::Found(&v), Lang::Fr, ""));
    let broken = |path: &str, value: Value| {
        let mut doc = good.clone();
        *doc.pointer_mut(path).unwrap() = value;
        contract.errors(SHIPMENT_ITEM, &doc)
    };
    assert!(
        !broken("/shipment/isFinal", json!("false")).is_empty(),
        "type"
    );
    assert!(!broken("/shipment/holder", json!(2)).is_empty(), "enum");
    assert!(
        !broken("/shipment/timeline/0/type", json!(2)).is_empty(),
        "nested enum"
    );
    assert!(
        !broken("/shipment/event/0/date", json!("2025-12-20T14:00:00Z")).is_empty(),
        "date format"
    );
    assert!(!broken("/lang", json!("fr")).is_empty(), "lang enum");
    assert!(
        !broken("/returnCode", json!(207)).is_empty(),
        "returnCode enum"
    );
    let mut extra = good.clone();
    extra["shipment"]["eventsTruncated"] = json!(true);
    assert!(
        !contract.errors(SHIPMENT_ITEM, &extra).is_empty(),
        "undeclared field"
    );
    let mut missing = good.clone();
    missing["shipment"]
        .as_object_mut()
        .unwrap()
        .remove("idShip");
    assert!(
        !contract.errors(SHIPMENT_ITEM, &missing).is_empty(),
        "required field"
    );
    let mut no_code = good;
    no_code.as_object_mut().unwrap().remove("returnCode");
    assert!(
        !contract.errors(BASE, &no_code).is_empty(),
        "required returnCode"
    );
}

#[test]
fn the_lang_values_are_la_postes() {
    let contract = Contract::new();
    let allowed = contract
        .pointer("/components/parameters/langQ/schema/enum")
        .as_array()
        .unwrap();
    let ours: Vec<Value> = Lang::ALL.iter().map(|l| json!(l.laposte())).collect();
    assert_eq!(allowed.len(), ours.len());
    assert!(ours.iter().all(|l| allowed.contains(l)));
    assert_eq!(
        contract.pointer("/components/parameters/langQ/schema/default"),
        Lang::DEFAULT.laposte()
    );
}
