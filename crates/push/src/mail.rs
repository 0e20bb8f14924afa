//! E-mail alerts: the messages (French and English), their links and tokens, and the
//! [`Mailer`] that hands them to the SMTP relay.
//!
//! Two messages: the double opt-in confirmation (a link with a one-time token; the store keeps
//! only its SHA-256) and the status change (with a link to the tracking page and an unsubscribe
//! link). Unsubscribe links carry an HMAC of the parcel and the address under a key derived from
//! the node's master key, so they need no stored state and cannot be forged for someone else's
//! address. Messages are plain text, UTF-8, base64-encoded (so no line can be read as the end of
//! the SMTP data, and no 8-bit transport is needed); subjects are RFC 2047 encoded words. The
//! wording (La Poste's status names and event sentences) and the Europe/Paris dates are those of
//! the pages (`rempart-views`).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rempart_domain::{Timestamp, TrackingNumber};
use rempart_store::push::{EmailAddress, EmailSubscription, Lang, Notice};
use rempart_views::{paris, wording};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::smtp::{SmtpClient, SmtpError};

/// Characters of a confirmation token (32 random bytes, base64url without padding).
pub const CONFIRM_TOKEN_LEN: usize = 43;
/// Characters of an unsubscribe token (16 bytes of HMAC, base64url without padding).
pub const UNSUBSCRIBE_TOKEN_LEN: usize = 22;
/// Longest display name in `From`.
pub const MAX_DISPLAY_NAME: usize = 64;

/// A subject and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub body: String,
}

/// Why mail settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    #[error("the site URL must be http(s)://… in printable ASCII, without a trailing slash")]
    BadSite,
    #[error("the sender's name must be 1 to {MAX_DISPLAY_NAME} characters without controls")]
    BadName,
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

/// Where links in messages point: the public site's base URL, e.g. `https://suivi.example`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site(String);

impl Site {
    pub fn parse(text: &str) -> Result<Self, MailError> {
        let ok = (text.starts_with("https://") || text.starts_with("http://"))
            && !text.ends_with('/')
            && text.len() <= 200
            && text.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Site(text.to_owned()))
        } else {
            Err(MailError::BadSite)
        }
    }

    fn prefix(&self, lang: Lang) -> String {
        format!("{}{}", self.0, views_lang(lang).path_prefix())
    }

    #[must_use]
    pub fn track(&self, lang: Lang, tn: &TrackingNumber) -> String {
        format!("{}/track/{tn}", self.prefix(lang))
    }

    #[must_use]
    pub fn confirm(&self, lang: Lang, token: &str) -> String {
        format!("{}/alerts/confirm/{token}", self.prefix(lang))
    }

    #[must_use]
    pub fn unsubscribe(&self, lang: Lang, tn: &TrackingNumber, token: &str) -> String {
        format!("{}/alerts/stop/{tn}/{token}", self.prefix(lang))
    }
}

/// A new confirmation token: the text for the link, and the digest the store keeps.
pub fn new_confirmation_token() -> Result<(String, [u8; 32]), MailError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| MailError::Random(e.to_string()))?;
    let text = URL_SAFE_NO_PAD.encode(bytes);
    let digest = Sha256::digest(text.as_bytes()).into();
    Ok((text, digest))
}

/// The digest to look a confirmation token up by, if the text has the token's exact form.
#[must_use]
pub fn confirmation_digest(text: &str) -> Option<[u8; 32]> {
    let well_formed = text.len() == CONFIRM_TOKEN_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && URL_SAFE_NO_PAD
            .decode(text)
            .is_ok_and(|bytes| bytes.len() == 32);
    well_formed.then(|| Sha256::digest(text.as_bytes()).into())
}

/// The unsubscribe token of a parcel's address.
#[must_use]
pub fn unsubscribe_token(key: &[u8; 32], tn: &TrackingNumber, address: &EmailAddress) -> String {
    URL_SAFE_NO_PAD.encode(&unsubscribe_mac(key, tn, address)[..16])
}

/// Whether `token` is the unsubscribe token of this parcel's address (constant time).
#[must_use]
pub fn unsubscribe_token_matches(
    key: &[u8; 32],
    tn: &TrackingNumber,
    address: &EmailAddress,
    token: &str,
) -> bool {
    use subtle::ConstantTimeEq;
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(token) else {
        return false;
    };
    token.len() == UNSUBSCRIBE_TOKEN_LEN
        && bytes.len() == 16
        && bool::from(unsubscribe_mac(key, tn, address)[..16].ct_eq(&bytes))
}

fn unsubscribe_mac(key: &[u8; 32], tn: &TrackingNumber, address: &EmailAddress) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(b"rempart unsubscribe v1\0");
    mac.update(tn.as_bytes());
    mac.update(b"\0");
    mac.update(address.as_str().as_bytes());
    mac.finalize().into_bytes().into()
}

/// The pages' language for an e-mail language.
fn views_lang(lang: Lang) -> rempart_views::Lang {
    match lang {
        Lang::Fr => rempart_views::Lang::Fr,
        Lang::En => rempart_views::Lang::En,
    }
}

/// The status-change message; `now` decides whether the date shows its year.
#[must_use]
pub fn status_message(
    lang: Lang,
    notice: &Notice,
    site: &Site,
    unsubscribe: &str,
    now: Timestamp,
) -> Message {
    let tn = notice.tracking_number;
    let v = views_lang(lang);
    let status = wording::status_label(notice.status, v);
    let sentence = wording::event_label(notice.event.code, v);
    let when = paris::human(notice.event.occurred_at, v, now);
    let place = notice
        .event
        .location
        .as_deref()
        .map(|l| format!(" — {l}"))
        .unwrap_or_default();
    let track = site.track(lang, &tn);
    match lang {
        Lang::Fr => Message {
            subject: format!("Colis {tn} : {status}"),
            body: format!(
                "Bonjour,\n\nDu nouveau pour le colis {tn} : {status}.\n\n{sentence}\n\
                 {when}, heure de Paris{place}.\n\nSuivre votre colis : {track}\n\n--\n\
                 Vous recevez ce message parce que vous avez demandé à suivre ce colis par \
                 e-mail.\nNe plus recevoir ces messages : {unsubscribe}\n"
            ),
        },
        Lang::En => Message {
            subject: format!("Parcel {tn}: {status}"),
            body: format!(
                "Hello,\n\nNews of parcel {tn}: {status}.\n\n{sentence}\n\
                 {when}, Paris time{place}.\n\nTrack your parcel: {track}\n\n--\n\
                 You are receiving this because you asked to follow this parcel by e-mail.\n\
                 Stop these messages: {unsubscribe}\n"
            ),
        },
    }
}

/// The double opt-in message.
#[must_use]
pub fn confirmation_message(lang: Lang, tn: &TrackingNumber, confirm: &str) -> Message {
    match lang {
        Lang::Fr => Message {
            subject: format!("Confirmez les alertes pour le colis {tn}"),
            body: format!(
                "Bonjour,\n\nQuelqu'un, sans doute vous, a demandé à recevoir à cette adresse les \
                 étapes du colis {tn}.\nPour confirmer, ouvrez ce lien dans les 24 heures :\n\
                 {confirm}\n\nSi vous n'êtes pas à l'origine de cette demande, ignorez ce \
                 message : vous ne recevrez rien d'autre.\n"
            ),
        },
        Lang::En => Message {
            subject: format!("Confirm alerts for parcel {tn}"),
            body: format!(
                "Hello,\n\nSomeone, probably you, asked to receive the progress of parcel {tn} \
                 at this address.\nTo confirm, open this link within 24 hours:\n{confirm}\n\n\
                 If you did not ask for this, ignore this message: you will receive nothing else.\n"
            ),
        },
    }
}

/// The sender: a display name and an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    name: String,
    address: EmailAddress,
}

impl Mailbox {
    pub fn new(name: &str, address: EmailAddress) -> Result<Self, MailError> {
        let len = name.chars().count();
        if !(1..=MAX_DISPLAY_NAME).contains(&len) || name.chars().any(char::is_control) {
            return Err(MailError::BadName);
        }
        Ok(Mailbox {
            name: name.to_owned(),
            address,
        })
    }

    #[must_use]
    pub fn address(&self) -> &EmailAddress {
        &self.address
    }
}

/// RFC 2047 encoded words (base64, UTF-8), each at most 75 characters, folded.
#[must_use]
pub fn encode_header_text(text: &str) -> String {
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + 45).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        words.push(format!(
            "=?UTF-8?B?{}?=",
            STANDARD.encode(&text[start..end])
        ));
        start = end;
    }
    words.join("\r\n ")
}

/// The whole message as handed to the relay: headers and base64 body, CRLF lines.
#[must_use]
pub fn render(
    from: &Mailbox,
    to: &EmailAddress,
    message: &Message,
    date: OffsetDateTime,
    message_id: &str,
    unsubscribe: Option<&str>,
) -> Vec<u8> {
    use std::fmt::Write as _;
    let date = date
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let domain = from
        .address
        .as_str()
        .rsplit('@')
        .next()
        .unwrap_or("localhost");
    let mut out = String::new();
    let _ = write!(
        out,
        "From: {} <{}>\r\nTo: <{}>\r\nSubject: {}\r\nDate: {date}\r\n\
         Message-ID: <{message_id}@{domain}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\
         Auto-Submitted: auto-generated\r\n",
        encode_header_text(&from.name),
        from.address.as_str(),
        to.as_str(),
        encode_header_text(&message.subject),
    );
    if let Some(link) = unsubscribe {
        let _ = write!(out, "List-Unsubscribe: <{link}>\r\n");
    }
    out.push_str("\r\n");
    let encoded = STANDARD.encode(message.body.replace('\n', "\r\n"));
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// What the mailer needs besides the relay.
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub from: Mailbox,
    pub site: Site,
    /// Key of the unsubscribe tokens (derive it from the master key; see `MasterKeys`).
    pub link_key: [u8; 32],
}

/// Builds and sends the two messages.
#[derive(Debug, Clone)]
pub struct Mailer {
    smtp: SmtpClient,
    settings: MailSettings,
}

impl Mailer {
    #[must_use]
    pub fn new(smtp: SmtpClient, settings: MailSettings) -> Self {
        Mailer { smtp, settings }
    }

    #[must_use]
    pub fn settings(&self) -> &MailSettings {
        &self.settings
    }

    /// Sends a status change to a parcel's confirmed address. `id` makes the Message-ID.
    pub async fn send_status(
        &self,
        subscription: &EmailSubscription,
        notice: &Notice,
        id: &str,
    ) -> Result<(), SmtpError> {
        let s = &self.settings;
        let tn = subscription.tracking_number;
        let token = unsubscribe_token(&s.link_key, &tn, &subscription.address);
        let stop = s.site.unsubscribe(subscription.lang, &tn, &token);
        let date = OffsetDateTime::now_utc();
        let now = Timestamp::from_datetime(date);
        let message = status_message(subscription.lang, notice, &s.site, &stop, now);
        let bytes = render(
            &s.from,
            &subscription.address,
            &message,
            date,
            id,
            Some(&stop),
        );
        self.smtp
            .send(s.from.address(), &subscription.address, &bytes)
            .await
    }

    /// Sends the double opt-in confirmation with the token's link.
    pub async fn send_confirmation(
        &self,
        tn: &TrackingNumber,
        to: &EmailAddress,
        lang: Lang,
        token: &str,
    ) -> Result<(), SmtpError> {
        let s = &self.settings;
        let message = confirmation_message(lang, tn, &s.site.confirm(lang, token));
        let id = format!("confirm-{}", &token[..token.len().min(12)]);
        let bytes = render(&s.from, to, &message, OffsetDateTime::now_utc(), &id, None);
        self.smtp.send(s.from.address(), to, &bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rempart_domain::{Event, EventCode, EventId, Status};

    fn tn() -> TrackingNumber {
        TrackingNumber::parse("RR123456785FR").unwrap()
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn notice() -> Notice {
        Notice {
            tracking_number: tn(),
            previous: Some(Status::InTransit),
            status: Status::OutForDelivery,
            is_final: false,
            event: Event {
                event_id: EventId::parse("d:1").unwrap(),
                tracking_number: tn(),
                code: EventCode::Md2,
                occurred_at: at("2025-12-22T06:02:00Z"),
                location: Some("Paris 15".into()),
                product: None,
            },
        }
    }

    #[test]
    fn status_messages_in_both_languages() {
        let site = Site::parse("https://suivi.example").unwrap();
        let now = at("2025-12-23T10:00:00Z");
        let fr = status_message(Lang::Fr, &notice(), &site, "https://stop", now);
        assert_eq!(fr.subject, "Colis RR123456785FR : En cours de livraison");
        assert!(
            fr.body
                .contains("lundi 22 décembre, 07:02, heure de Paris — Paris 15.")
        );
        assert!(fr.body.contains(wording::event_label(
            EventCode::Md2,
            rempart_views::Lang::Fr
        )));
        assert!(
            fr.body
                .contains("https://suivi.example/fr/track/RR123456785FR")
        );
        assert!(fr.body.contains("https://stop"));
        let en = status_message(Lang::En, &notice(), &site, "https://stop", now);
        assert_eq!(en.subject, "Parcel RR123456785FR: Out for delivery");
        assert!(
            en.body
                .contains("Monday 22 December, 07:02, Paris time — Paris 15.")
        );
        assert!(
            en.body
                .contains("https://suivi.example/en/track/RR123456785FR")
        );
    }

    #[test]
    fn confirmation_tokens_round_trip_and_hostile_ones_are_refused() {
        let (text, digest) = new_confirmation_token().unwrap();
        assert_eq!(text.len(), CONFIRM_TOKEN_LEN);
        assert_eq!(confirmation_digest(&text), Some(digest));
        let (other, _) = new_confirmation_token().unwrap();
        assert_ne!(text, other);
        for bad in [
            "",
            &text[..42],
            &format!("{text}A"),
            &text.replace(|c: char| c.is_ascii_alphabetic(), "+"),
            &format!("{}=", &text[..42]),
            "../../../../../../../../../../../etc/passwd",
            &"é".repeat(21),
        ] {
            assert_eq!(confirmation_digest(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unsubscribe_tokens_bind_parcel_and_address() {
        let key = [3; 32];
        let a = EmailAddress::parse("a@example.com").unwrap();
        let b = EmailAddress::parse("b@example.com").unwrap();
        let token = unsubscribe_token(&key, &tn(), &a);
        assert_eq!(token.len(), UNSUBSCRIBE_TOKEN_LEN);
        assert!(unsubscribe_token_matches(&key, &tn(), &a, &token));
        assert!(!unsubscribe_token_matches(&key, &tn(), &b, &token));
        assert!(!unsubscribe_token_matches(&[4; 32], &tn(), &a, &token));
        let other = TrackingNumber::parse("6A12345678905").unwrap();
        assert!(!unsubscribe_token_matches(&key, &other, &a, &token));
        for bad in [
            "",
            "x",
            &format!("{token}A"),
            &token[..21],
            "!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert!(!unsubscribe_token_matches(&key, &tn(), &a, bad));
        }
    }

    #[test]
    fn rendered_messages_have_safe_headers_and_a_decodable_body() {
        let from = Mailbox::new(
            "Suivi des colis",
            EmailAddress::parse("noreply@suivi.example").unwrap(),
        )
        .unwrap();
        let to = EmailAddress::parse("client@example.org").unwrap();
        let message = Message {
            subject: "Votre colis est livré, « enfin » — ".repeat(4),
            body: "ligne\n.\nfin é\n".into(),
        };
        let date = OffsetDateTime::from_unix_timestamp(1_766_400_000).unwrap();
        let bytes = render(&from, &to, &message, date, "dlv_1", Some("https://s/stop"));
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.is_ascii());
        assert!(head.lines().all(|l| l.len() <= 998));
        assert!(head.contains("To: <client@example.org>\r\n"));
        assert!(head.ends_with("\r\nList-Unsubscribe: <https://s/stop>"));
        assert!(head.contains("Message-ID: <dlv_1@suivi.example>"));
        let subject_words: Vec<&str> = head
            .split("Subject: ")
            .nth(1)
            .unwrap()
            .split("\r\nDate:")
            .next()
            .unwrap()
            .split("\r\n ")
            .collect();
        assert!(subject_words.iter().all(|w| w.len() <= 75));
        let decoded: String = subject_words
            .iter()
            .map(|w| {
                let b64 = w.trim_start_matches("=?UTF-8?B?").trim_end_matches("?=");
                String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
            })
            .collect();
        assert_eq!(decoded, message.subject);
        let body_bytes = STANDARD.decode(body.replace("\r\n", "")).unwrap();
        assert_eq!(
            String::from_utf8(body_bytes).unwrap(),
            "ligne\r\n.\r\nfin é\r\n"
        );
        assert!(Mailbox::new("a\r\nBcc: x@y.z", to.clone()).is_err());
        assert!(Mailbox::new("", to).is_err());
    }

    #[test]
    fn site_urls_are_checked() {
        for bad in [
            "",
            "suivi.example",
            "https://suivi.example/",
            "https://a b",
            "javascript:alert(1)",
            "https://x\r\nBcc: y",
        ] {
            assert_eq!(Site::parse(bad), Err(MailError::BadSite), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn confirmation_digest_never_panics(text in "\\PC{0,60}") {
            let _ = confirmation_digest(&text);
        }

        #[test]
        fn encoded_words_decode_to_the_text(text in "\\PC{0,120}") {
            let encoded = encode_header_text(&text);
            prop_assert!(encoded.is_ascii());
            let decoded: String = encoded
                .split("\r\n ")
                .filter(|w| !w.is_empty())
                .map(|w| {
                    let b64 = w.trim_start_matches("=?UTF-8?B?").trim_end_matches("?=");
                    String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
                })
                .collect();
            prop_assert_eq!(decoded, text);
        }
    }
}
