//! E-mail alerts, the customer's side (issue 13): the small form on a parcel's page, and the
//! pages of the double opt-in (asked → check your inbox; the link → a button that confirms;
//! confirmed) and of the unsubscribe link. French and English; the other page languages show
//! the English texts (the e-mails themselves are French or English).
//!
//! No page ever shows an address: "check your inbox" reads the same whether the parcel had no
//! subscription, a pending one or a confirmed one, so the form cannot be used to learn anything.
//! Links from e-mails land on a page with a button (a POST), not on the action itself: mail
//! scanners that follow links must not confirm or unsubscribe on a person's behalf.

use std::fmt::Write as _;

use rempart_domain::TrackingNumber;

use super::{Place, document, escape};
use crate::Lang;

/// Longest e-mail address the form takes (RFC 5321's path limit).
pub const MAX_EMAIL_INPUT: usize = 254;

struct AlertTexts {
    heading: &'static str,
    intro: &'static str,
    label: &'static str,
    submit: &'static str,
    asked_title: &'static str,
    asked_text: &'static str,
    confirm_title: &'static str,
    confirm_text: &'static str,
    confirm_button: &'static str,
    confirmed_title: &'static str,
    confirmed_text: &'static str,
    stop_title: &'static str,
    stop_text: &'static str,
    stop_button: &'static str,
    stopped_title: &'static str,
    stopped_text: &'static str,
    expired_title: &'static str,
    expired_text: &'static str,
    bad_address_title: &'static str,
    bad_address_text: &'static str,
    back: &'static str,
}

const FR: AlertTexts = AlertTexts {
    heading: "Être prévenu par e-mail",
    intro: "Recevez un e-mail à chaque étape de ce colis. Nous vous enverrons d'abord un lien de confirmation ; votre adresse n'est jamais affichée et elle est effacée après la livraison.",
    label: "Votre adresse e-mail",
    submit: "M'avertir",
    asked_title: "Vérifiez votre messagerie",
    asked_text: "Si cette adresse peut recevoir les alertes de ce colis, un e-mail de confirmation vient de lui être envoyé. Suivez son lien pour activer les alertes.",
    confirm_title: "Confirmer les alertes",
    confirm_text: "Confirmez-vous vouloir recevoir un e-mail à chaque étape de ce colis ?",
    confirm_button: "Confirmer",
    confirmed_title: "Alertes activées",
    confirmed_text: "Vous recevrez un e-mail à chaque étape du colis {n}. Chaque e-mail contient un lien pour arrêter.",
    stop_title: "Arrêter les alertes",
    stop_text: "Ne plus recevoir d'e-mails pour le colis {n} ?",
    stop_button: "Arrêter les alertes",
    stopped_title: "Alertes arrêtées",
    stopped_text: "Vous ne recevrez plus d'e-mails pour ce colis, et votre adresse a été effacée.",
    expired_title: "Lien expiré ou déjà utilisé",
    expired_text: "Ce lien n'est plus valable. Vous pouvez redemander les alertes depuis la page du colis.",
    bad_address_title: "Adresse e-mail non valable",
    bad_address_text: "Vérifiez l'adresse saisie, puis réessayez depuis la page du colis.",
    back: "Retour au colis",
};

const EN: AlertTexts = AlertTexts {
    heading: "Get e-mail alerts",
    intro: "Receive an e-mail at each step of this parcel. We first send you a confirmation link; your address is never shown and is erased after delivery.",
    label: "Your e-mail address",
    submit: "Alert me",
    asked_title: "Check your inbox",
    asked_text: "If this address can receive this parcel's alerts, a confirmation e-mail has just been sent to it. Follow its link to turn the alerts on.",
    confirm_title: "Confirm the alerts",
    confirm_text: "Do you want to receive an e-mail at each step of this parcel?",
    confirm_button: "Confirm",
    confirmed_title: "Alerts on",
    confirmed_text: "You will receive an e-mail at each step of parcel {n}. Each e-mail has a link to stop.",
    stop_title: "Stop the alerts",
    stop_text: "Stop the e-mails about parcel {n}?",
    stop_button: "Stop the alerts",
    stopped_title: "Alerts stopped",
    stopped_text: "You will receive no more e-mails about this parcel, and your address has been erased.",
    expired_title: "Link expired or already used",
    expired_text: "This link is no longer valid. You can ask for the alerts again from the parcel's page.",
    bad_address_title: "Not a valid e-mail address",
    bad_address_text: "Check the address you typed, then try again from the parcel's page.",
    back: "Back to the parcel",
};

fn alert_texts(lang: Lang) -> &'static AlertTexts {
    match lang {
        Lang::Fr => &FR,
        _ => &EN,
    }
}

/// The path the form posts to: `{prefix}/alerts/{n}`.
#[must_use]
pub fn alerts_path(lang: Lang, tn: &TrackingNumber) -> String {
    format!("{}/alerts/{}", lang.path_prefix(), tn.as_str())
}

/// The form on a parcel's page (added by the server when the node sends e-mail alerts).
#[must_use]
pub fn alerts_form(lang: Lang, tn: &TrackingNumber) -> String {
    let t = alert_texts(lang);
    format!(
        "<section class=\"alerts\"><h2>{heading}</h2><p class=\"hint\">{intro}</p>\
<form method=\"post\" action=\"{action}\"><label for=\"email\">{label}</label><div class=\"row\">\
<input id=\"email\" name=\"email\" type=\"email\" maxlength=\"{MAX_EMAIL_INPUT}\" required autocomplete=\"email\">\
<button type=\"submit\">{submit}</button></div></form></section>",
        heading = escape(t.heading),
        intro = escape(t.intro),
        action = escape(&alerts_path(lang, tn)),
        label = escape(t.label),
        submit = escape(t.submit),
    )
}

/// A short page: a title, a text (`{n}` filled with the number), an optional button posting to
/// the page's own path, and a link back to the parcel.
fn page(
    lang: Lang,
    tn: Option<&TrackingNumber>,
    title: &str,
    text: &str,
    button: Option<(&str, &str)>,
) -> String {
    let t = alert_texts(lang);
    let number = tn.map_or("", TrackingNumber::as_str);
    let mut main = format!(
        "<h1>{}</h1><p>{}</p>",
        escape(title),
        escape(&text.replace("{n}", number))
    );
    if let Some((action, label)) = button {
        let _ = write!(
            main,
            "<form method=\"post\" action=\"{}\"><button type=\"submit\">{}</button></form>",
            escape(action),
            escape(label)
        );
    }
    if let Some(tn) = tn {
        let _ = write!(
            main,
            "<p><a href=\"{}\">{}</a></p>",
            escape(&Place::Track(tn).path(lang)),
            escape(t.back)
        );
    }
    document(lang, title, None, &main)
}

/// After the form: the same page whatever the parcel's subscription was.
#[must_use]
pub fn asked(lang: Lang, tn: &TrackingNumber) -> String {
    let t = alert_texts(lang);
    page(lang, Some(tn), t.asked_title, t.asked_text, None)
}

/// The form's address is not one the service can write to.
#[must_use]
pub fn bad_address(lang: Lang, tn: &TrackingNumber) -> String {
    let t = alert_texts(lang);
    page(
        lang,
        Some(tn),
        t.bad_address_title,
        t.bad_address_text,
        None,
    )
}

/// The confirmation link's page: a button posting to `action` (the link's own path).
#[must_use]
pub fn confirm(lang: Lang, action: &str) -> String {
    let t = alert_texts(lang);
    page(
        lang,
        None,
        t.confirm_title,
        t.confirm_text,
        Some((action, t.confirm_button)),
    )
}

#[must_use]
pub fn confirmed(lang: Lang, tn: &TrackingNumber) -> String {
    let t = alert_texts(lang);
    page(lang, Some(tn), t.confirmed_title, t.confirmed_text, None)
}

/// The unsubscribe link's page: a button posting to `action`.
#[must_use]
pub fn stop(lang: Lang, tn: &TrackingNumber, action: &str) -> String {
    let t = alert_texts(lang);
    page(
        lang,
        Some(tn),
        t.stop_title,
        t.stop_text,
        Some((action, t.stop_button)),
    )
}

#[must_use]
pub fn stopped(lang: Lang, tn: &TrackingNumber) -> String {
    let t = alert_texts(lang);
    page(lang, Some(tn), t.stopped_title, t.stopped_text, None)
}

/// A confirmation or unsubscribe link that is unknown, used or expired.
#[must_use]
pub fn expired(lang: Lang) -> String {
    let t = alert_texts(lang);
    page(lang, None, t.expired_title, t.expired_text, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tn() -> TrackingNumber {
        TrackingNumber::parse("RR123456785FR").unwrap()
    }

    #[test]
    fn the_form_posts_to_the_parcels_alerts_path_in_each_language() {
        let fr = alerts_form(Lang::Fr, &tn());
        assert!(fr.contains("action=\"/fr/alerts/RR123456785FR\""), "{fr}");
        assert!(fr.contains("M&#39;avertir"));
        let en = alerts_form(Lang::En, &tn());
        assert!(en.contains("action=\"/en/alerts/RR123456785FR\""), "{en}");
        assert!(en.contains("Alert me"));
    }

    #[test]
    fn link_pages_act_only_through_a_button() {
        let page = confirm(Lang::En, "/en/alerts/confirm/abc");
        assert!(page.contains("<form method=\"post\" action=\"/en/alerts/confirm/abc\">"));
        let page = stop(Lang::Fr, &tn(), "/alerts/stop/RR123456785FR/x\"y");
        assert!(page.contains("x&quot;y"), "attributes are escaped");
        assert!(page.contains("RR123456785FR"));
    }

    #[test]
    fn asking_reads_the_same_every_time_and_leads_back_to_the_parcel() {
        // The page is built from the number alone: it cannot tell what happened to an address.
        let page = asked(Lang::Fr, &tn());
        assert_eq!(page, asked(Lang::Fr, &tn()));
        assert!(page.contains("href=\"/fr/track/RR123456785FR\""), "{page}");
    }
}
