//! E-mail alerts against a local SMTP sink started by the tests: the double opt-in, status
//! changes sent only to confirmed addresses, refused and busy recipients, and a relay that
//! misbehaves.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::memory::MemoryPush;
use common::sink::Sink;
use common::*;
use rempart_push::Dispatcher;
use rempart_push::mail::{self, MailSettings, Mailbox, Mailer, Site};
use rempart_push::metrics::{ChannelKind, Outcome};
use rempart_push::smtp::{SmtpClient, SmtpConfig, SmtpError, SmtpSecurity};
use rempart_store::push::{
    Channel, DeliveryState, EmailAddress, EmailRequest, EmailRequestOutcome, EmailState,
    EmailSubscription, Lang, NewDelivery, PushStore,
};

const LIMIT: Duration = Duration::from_secs(30);
const LINK_KEY: [u8; 32] = [9; 32];

fn smtp(sink: &Sink, security: SmtpSecurity) -> SmtpClient {
    let mut config = SmtpConfig::new("127.0.0.1", sink.addr.port());
    config.security = security;
    config.hello_name = "rempart.test".into();
    config.command_timeout = Duration::from_secs(5);
    SmtpClient::new(config).unwrap()
}

fn mailer(sink: &Sink) -> Mailer {
    let from = Mailbox::new(
        "Suivi des colis",
        EmailAddress::parse("noreply@suivi.example").unwrap(),
    )
    .unwrap();
    Mailer::new(
        smtp(sink, SmtpSecurity::Plain),
        MailSettings {
            from,
            site: Site::parse("https://suivi.example").unwrap(),
            link_key: LINK_KEY,
        },
    )
}

/// A dispatcher running with a mailer that hands messages to `sink`.
fn spawn_mailing(store: &Arc<MemoryPush>, sink: &Sink) -> Running {
    let client = loopback_client(Duration::from_secs(5));
    let d = Dispatcher::new(store.clone(), client, keys(), fast_config()).with_mailer(mailer(sink));
    spawn(d)
}

fn address(text: &str) -> EmailAddress {
    EmailAddress::parse(text).unwrap()
}

fn day_later() -> rempart_domain::Timestamp {
    rempart_domain::Timestamp(now().micros() + 86_400_000_000)
}

/// Request → confirmation e-mail → the customer follows the link → confirmed. Someone who only
/// knows the tracking number cannot confirm: the token is only in the mailbox.
#[tokio::test]
async fn double_opt_in_through_the_sink() {
    let sink = Sink::start().await;
    let store = MemoryPush::new(1_000);
    let (token, digest) = mail::new_confirmation_token().unwrap();
    let request = EmailRequest {
        tracking_number: tn(1),
        address: address("jeanne@example.org"),
        lang: Lang::Fr,
        token_digest: digest,
        expires_at: day_later(),
    };
    assert_eq!(
        store.request_email(request, now()).await.unwrap(),
        EmailRequestOutcome::Pending
    );
    mailer(&sink)
        .send_confirmation(&tn(1), &address("jeanne@example.org"), Lang::Fr, &token)
        .await
        .unwrap();

    let mails = sink.received();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.to, ["jeanne@example.org"]);
    assert_eq!(m.from, "noreply@suivi.example");
    assert_eq!(
        m.subject(),
        format!("Confirmez les alertes pour le colis {}", tn(1))
    );
    let body = m.body();
    let link = body.lines().find(|l| l.starts_with("https://")).unwrap();
    assert_eq!(
        link,
        format!("https://suivi.example/fr/alerts/confirm/{token}")
    );

    // A guessed token confirms nothing; the one from the mail does, once.
    let (guess, _) = mail::new_confirmation_token().unwrap();
    let guessed = mail::confirmation_digest(&guess).unwrap();
    assert!(store.confirm_email(guessed, now()).await.unwrap().is_none());
    let from_mail = link.rsplit('/').next().unwrap();
    let digest = mail::confirmation_digest(from_mail).unwrap();
    let confirmed = store.confirm_email(digest, now()).await.unwrap().unwrap();
    assert!(matches!(confirmed.state, EmailState::Confirmed { .. }));
    assert!(store.confirm_email(digest, now()).await.unwrap().is_none());

    // Now nobody can put another address on the parcel.
    let (_, other) = mail::new_confirmation_token().unwrap();
    let hijack = EmailRequest {
        tracking_number: tn(1),
        address: address("mallory@example.net"),
        lang: Lang::En,
        token_digest: other,
        expires_at: day_later(),
    };
    assert_eq!(
        store.request_email(hijack, now()).await.unwrap(),
        EmailRequestOutcome::AlreadyConfirmed
    );
}

#[tokio::test]
async fn english_confirmation_links_to_english_pages() {
    let sink = Sink::start().await;
    let (token, _) = mail::new_confirmation_token().unwrap();
    mailer(&sink)
        .send_confirmation(&tn(2), &address("john@example.org"), Lang::En, &token)
        .await
        .unwrap();
    let m = &sink.received()[0];
    assert_eq!(m.subject(), format!("Confirm alerts for parcel {}", tn(2)));
    assert!(
        m.body()
            .contains(&format!("https://suivi.example/en/alerts/confirm/{token}"))
    );
}

fn subscription(serial: u32, to: &str, state: EmailState) -> EmailSubscription {
    EmailSubscription {
        tracking_number: tn(serial),
        address: address(to),
        lang: Lang::Fr,
        state,
        created_at: now(),
        final_at: None,
    }
}

fn confirmed(serial: u32, to: &str) -> EmailSubscription {
    subscription(serial, to, EmailState::Confirmed { at: now() })
}

fn email_delivery(serial: u32) -> NewDelivery {
    NewDelivery {
        channel: Channel::Email,
        notice: notice(serial, &format!("mail:{serial}")),
    }
}

#[tokio::test]
async fn status_changes_go_to_confirmed_addresses_only() {
    let sink = Sink::start().await;
    let store = Arc::new(MemoryPush::new(1_000));
    store.put_email(confirmed(1, "confirmed@example.org"));
    store.put_email(subscription(
        2,
        "pending@example.org",
        EmailState::Pending {
            token_digest: [1; 32],
            expires_at: day_later(),
        },
    ));
    store.enqueue(
        vec![email_delivery(1), email_delivery(2), email_delivery(3)],
        now(),
    );
    let running = spawn_mailing(&store, &sink);
    let metrics = running.metrics.clone();
    wait_until(LIMIT, "3 settled deliveries", || {
        store
            .all()
            .iter()
            .all(|d| matches!(d.state, DeliveryState::Delivered { .. }))
    })
    .await;
    running.stop().await;

    assert_eq!(
        metrics.deliveries(ChannelKind::Email, Outcome::Delivered),
        1
    );
    assert_eq!(metrics.deliveries(ChannelKind::Email, Outcome::Dropped), 2);
    let mails = sink.received();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.to, ["confirmed@example.org"]);
    assert_eq!(
        m.subject(),
        format!("Colis {} : En cours de livraison", tn(1))
    );
    let body = m.body();
    assert!(body.contains(&format!("https://suivi.example/fr/track/{}", tn(1))));
    let token = mail::unsubscribe_token(&LINK_KEY, &tn(1), &address("confirmed@example.org"));
    let stop = format!("https://suivi.example/fr/alerts/stop/{}/{token}", tn(1));
    assert!(body.contains(&stop));
    assert_eq!(m.header("List-Unsubscribe"), Some(format!("<{stop}>")));
}

#[tokio::test]
async fn a_refused_recipient_is_parked_and_a_busy_one_retried() {
    let rule = Arc::new(|to: &str, n: usize| match to {
        "nobody@example.org" => "550 5.1.1 no such mailbox".to_owned(),
        "busy@example.org" if n < 2 => "451 4.2.0 try later".to_owned(),
        _ => "250 OK".to_owned(),
    });
    let sink = Sink::with_rule(rule, false).await;
    let store = Arc::new(MemoryPush::new(1_000));
    store.put_email(confirmed(1, "nobody@example.org"));
    store.put_email(confirmed(2, "busy@example.org"));
    let ids = store.enqueue(vec![email_delivery(1), email_delivery(2)], now());
    let running = spawn_mailing(&store, &sink);
    wait_until(LIMIT, "both settled", || {
        matches!(store.get(ids[0]).state, DeliveryState::Dead { .. })
            && matches!(store.get(ids[1]).state, DeliveryState::Delivered { .. })
    })
    .await;
    running.stop().await;
    let refused = store.get(ids[0]);
    assert!(refused.last_error.unwrap().contains("550"));
    assert_eq!(store.get(ids[1]).attempts, 2);
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn starttls_is_required_when_configured() {
    let sink = Sink::start().await;
    let client = smtp(&sink, SmtpSecurity::StartTls);
    let result = client
        .send(
            &address("a@example.org"),
            &address("b@example.org"),
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await;
    assert_eq!(result, Err(SmtpError::NoStartTls));
    assert!(sink.received().is_empty());
}

/// A relay (or someone in the middle) that sends a second reply right after its STARTTLS
/// answer: that reply would be read as if it came over TLS, so the client stops.
#[tokio::test]
async fn replies_injected_before_tls_are_refused() {
    let sink = Sink::with_rule(Arc::new(|_, _| "250 OK".into()), true).await;
    let client = smtp(&sink, SmtpSecurity::StartTls);
    let result = client
        .send(
            &address("a@example.org"),
            &address("b@example.org"),
            b"x\r\n",
        )
        .await;
    assert_eq!(
        result,
        Err(SmtpError::Protocol("data after the STARTTLS answer"))
    );
}

#[tokio::test]
async fn a_message_with_dots_arrives_whole() {
    let sink = Sink::start().await;
    let client = smtp(&sink, SmtpSecurity::Plain);
    let message = b"Subject: dots\r\n\r\n.\r\n..two\r\nend\r\n";
    client
        .send(
            &address("a@example.org"),
            &address("b@example.org"),
            message,
        )
        .await
        .unwrap();
    assert_eq!(
        sink.received()[0].data,
        "Subject: dots\r\n\r\n.\r\n..two\r\nend\r\n"
    );
}
