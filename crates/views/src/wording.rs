//! La Poste's vocabulary in six languages: what each event code says to a customer, the name of
//! each status, the products as customers know them, and the Suivi v2 return messages.
//!
//! The French event sentences follow the labels La Poste's Suivi v2 API returns (for example
//! "Votre colis est livré.", "Votre colis est arrivé dans le pays du destinataire.", quoted in
//! docs/suivi-v2.md with their sources); where La Poste words an event differently per product,
//! the parcel wording is used. The other languages say the same thing in the same register.

use std::borrow::Cow;

use rempart_domain::{EventCode, Status};

use crate::Lang;

/// What an event says to the customer, e.g. DI1 → "Votre colis est livré."
#[must_use]
pub fn event_label(code: EventCode, lang: Lang) -> &'static str {
    let labels: [&'static str; 6] = match code {
        EventCode::Dr1 => [
            "Votre colis va bientôt nous être confié ! Il est en cours de préparation chez votre expéditeur.",
            "Your parcel will soon be handed over to us. Your sender is preparing it.",
            "Ihr Paket wird uns bald übergeben. Ihr Absender bereitet es gerade vor.",
            "Su paquete nos será entregado pronto. Su remitente lo está preparando.",
            "Il suo pacco ci sarà affidato a breve. Il mittente lo sta preparando.",
            "Uw pakket wordt binnenkort aan ons overhandigd. Uw afzender maakt het klaar.",
        ],
        EventCode::Pc1 => [
            "Votre colis est pris en charge. Il va être acheminé vers son site de livraison.",
            "Your parcel has been accepted. It will be routed to its delivery site.",
            "Ihr Paket wurde angenommen. Es wird zu seinem Zustellstandort befördert.",
            "Su paquete ha sido admitido. Se encaminará hacia su centro de reparto.",
            "Il suo pacco è stato preso in carico. Sarà instradato verso il centro di consegna.",
            "Uw pakket is in ontvangst genomen. Het wordt naar het bezorgdepot gebracht.",
        ],
        EventCode::Pc2 => [
            "Votre colis a été pris en charge dans le pays d’expédition.",
            "Your parcel has been accepted in the country of origin.",
            "Ihr Paket wurde im Absendeland angenommen.",
            "Su paquete ha sido admitido en el país de origen.",
            "Il suo pacco è stato preso in carico nel paese di origine.",
            "Uw pakket is in het land van herkomst in ontvangst genomen.",
        ],
        EventCode::Et1 => [
            "Votre colis est en transit sur nos plateformes logistiques.",
            "Your parcel is in transit through our sorting centres.",
            "Ihr Paket ist in unseren Logistikzentren unterwegs.",
            "Su paquete está en tránsito por nuestros centros logísticos.",
            "Il suo pacco è in transito nei nostri centri logistici.",
            "Uw pakket is onderweg via onze sorteercentra.",
        ],
        EventCode::Et2 => [
            "Votre colis est prêt à partir de son territoire d’expédition. Il va être remis au transporteur pour son acheminement.",
            "Your parcel is ready to leave the country of origin. It will be handed over to the carrier.",
            "Ihr Paket ist bereit, das Absendeland zu verlassen. Es wird dem Transportunternehmen übergeben.",
            "Su paquete está listo para salir del país de origen. Se entregará al transportista.",
            "Il suo pacco è pronto a lasciare il paese di origine. Sarà affidato al vettore.",
            "Uw pakket staat klaar om het land van herkomst te verlaten. Het wordt aan de vervoerder overgedragen.",
        ],
        EventCode::Et3 => [
            "Votre colis est arrivé dans le pays du destinataire.",
            "Your parcel has arrived in the destination country.",
            "Ihr Paket ist im Empfängerland angekommen.",
            "Su paquete ha llegado al país de destino.",
            "Il suo pacco è arrivato nel paese di destinazione.",
            "Uw pakket is aangekomen in het land van bestemming.",
        ],
        EventCode::Et4 => [
            "Votre colis est en transit dans un pays intermédiaire.",
            "Your parcel is in transit through another country.",
            "Ihr Paket ist in einem Transitland unterwegs.",
            "Su paquete está en tránsito por otro país.",
            "Il suo pacco è in transito in un paese intermedio.",
            "Uw pakket is onderweg via een transitland.",
        ],
        EventCode::Ep1 => [
            "Votre colis est arrivé sur son site de livraison. Il vous sera présenté prochainement.",
            "Your parcel has reached its delivery site. It will be presented to you soon.",
            "Ihr Paket ist am Zustellstandort angekommen. Es wird Ihnen in Kürze zugestellt.",
            "Su paquete ha llegado a su centro de reparto. Se le presentará en breve.",
            "Il suo pacco è arrivato al centro di consegna. Le sarà presentato a breve.",
            "Uw pakket is aangekomen op het bezorgdepot. Het wordt binnenkort bij u aangeboden.",
        ],
        EventCode::Do1 => [
            "Votre colis est en cours de dédouanement.",
            "Your parcel is going through customs.",
            "Ihr Paket befindet sich in der Zollabfertigung.",
            "Su paquete está en trámite de aduanas.",
            "Il suo pacco è in fase di sdoganamento.",
            "Uw pakket wordt door de douane afgehandeld.",
        ],
        EventCode::Do2 => [
            "Votre colis a été dédouané.",
            "Your parcel has cleared customs.",
            "Ihr Paket wurde vom Zoll freigegeben.",
            "Su paquete ha sido despachado en aduanas.",
            "Il suo pacco è stato sdoganato.",
            "Uw pakket is door de douane vrijgegeven.",
        ],
        EventCode::Do3 => [
            "Votre colis est retenu par la douane.",
            "Your parcel is being held by customs.",
            "Ihr Paket wird vom Zoll zurückgehalten.",
            "Su paquete está retenido en aduanas.",
            "Il suo pacco è trattenuto in dogana.",
            "Uw pakket wordt door de douane tegengehouden.",
        ],
        EventCode::Pb1 => [
            "Votre colis a subi un incident. Nous faisons le nécessaire pour le résoudre.",
            "Something has happened to your parcel. We are working to sort it out.",
            "Bei Ihrem Paket ist ein Problem aufgetreten. Wir kümmern uns um eine Lösung.",
            "Su paquete ha sufrido una incidencia. Estamos trabajando para resolverla.",
            "Il suo pacco ha subito un inconveniente. Stiamo lavorando per risolverlo.",
            "Er is een probleem met uw pakket. We werken aan een oplossing.",
        ],
        EventCode::Pb2 => [
            "L’incident est résolu : votre colis a repris son acheminement.",
            "The problem has been solved: your parcel is on its way again.",
            "Das Problem ist behoben: Ihr Paket ist wieder unterwegs.",
            "La incidencia se ha resuelto: su paquete sigue su camino.",
            "Il problema è stato risolto: il suo pacco ha ripreso il viaggio.",
            "Het probleem is opgelost: uw pakket is weer onderweg.",
        ],
        EventCode::Md2 => [
            "Votre colis est en cours de livraison.",
            "Your parcel is out for delivery.",
            "Ihr Paket ist in Zustellung.",
            "Su paquete está en reparto.",
            "Il suo pacco è in consegna.",
            "Uw pakket wordt vandaag bezorgd.",
        ],
        EventCode::Nd1 => [
            "Votre colis n’a pas pu être livré.",
            "We could not deliver your parcel.",
            "Ihr Paket konnte nicht zugestellt werden.",
            "No hemos podido entregar su paquete.",
            "Non è stato possibile consegnare il suo pacco.",
            "We konden uw pakket niet bezorgen.",
        ],
        EventCode::Ag1 => [
            "Votre colis vous attend dans votre point de retrait.",
            "Your parcel is waiting for you at your pick-up point.",
            "Ihr Paket liegt in Ihrer Abholstelle für Sie bereit.",
            "Su paquete le espera en su punto de recogida.",
            "Il suo pacco la attende presso il punto di ritiro.",
            "Uw pakket ligt voor u klaar op uw afhaalpunt.",
        ],
        EventCode::Re1 => [
            "Votre colis est retourné à l’expéditeur.",
            "Your parcel is being returned to the sender.",
            "Ihr Paket wird an den Absender zurückgeschickt.",
            "Su paquete se está devolviendo al remitente.",
            "Il suo pacco è in restituzione al mittente.",
            "Uw pakket wordt teruggestuurd naar de afzender.",
        ],
        EventCode::Di1 => [
            "Votre colis est livré.",
            "Your parcel has been delivered.",
            "Ihr Paket wurde zugestellt.",
            "Su paquete ha sido entregado.",
            "Il suo pacco è stato consegnato.",
            "Uw pakket is bezorgd.",
        ],
        EventCode::Di2 => [
            "Votre colis a été livré à son expéditeur.",
            "Your parcel has been delivered back to its sender.",
            "Ihr Paket wurde an seinen Absender zurückgeliefert.",
            "Su paquete ha sido entregado de vuelta a su remitente.",
            "Il suo pacco è stato riconsegnato al mittente.",
            "Uw pakket is terugbezorgd bij de afzender.",
        ],
    };
    labels[lang.index()]
}

/// The short name of a status, the headline of a parcel page: "Livré", "En cours de livraison"…
#[must_use]
pub fn status_label(status: Status, lang: Lang) -> &'static str {
    let labels: [&'static str; 6] = match status {
        Status::InfoReceived => [
            "Annoncé",
            "Announced",
            "Angekündigt",
            "Anunciado",
            "Annunciato",
            "Aangemeld",
        ],
        Status::InTransit => [
            "En cours d’acheminement",
            "In transit",
            "Unterwegs",
            "En tránsito",
            "In transito",
            "Onderweg",
        ],
        Status::OutForDelivery => [
            "En cours de livraison",
            "Out for delivery",
            "In Zustellung",
            "En reparto",
            "In consegna",
            "Wordt bezorgd",
        ],
        Status::AttemptFailed => [
            "Non distribuable",
            "Not delivered",
            "Nicht zugestellt",
            "No entregado",
            "Non consegnato",
            "Niet bezorgd",
        ],
        Status::AvailableForPickup => [
            "Disponible en point de retrait",
            "Ready for collection",
            "Abholbereit",
            "Listo para recoger",
            "Pronto per il ritiro",
            "Klaar om af te halen",
        ],
        Status::Delivered => [
            "Livré",
            "Delivered",
            "Zugestellt",
            "Entregado",
            "Consegnato",
            "Bezorgd",
        ],
        Status::Returned => [
            "Retourné à l’expéditeur",
            "Returned to sender",
            "An den Absender zurück",
            "Devuelto al remitente",
            "Restituito al mittente",
            "Terug naar afzender",
        ],
        Status::Exception => [
            "Problème en cours",
            "Problem being dealt with",
            "Problem in Bearbeitung",
            "Incidencia en curso",
            "Problema in corso",
            "Probleem in behandeling",
        ],
    };
    labels[lang.index()]
}

/// The products customers know by name. Anything else is shown as the depot wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    Colissimo,
    Chronopost,
    LettreSuivie,
}

impl Product {
    /// Recognises `colissimo`, `chronopost`, `lettre-suivie`, `lettre_suivie`, `Lettre suivie`…
    /// (case, and `-`/`_`/space between words, do not matter).
    #[must_use]
    pub fn recognise(product: &str) -> Option<Product> {
        [
            Product::Colissimo,
            Product::Chronopost,
            Product::LettreSuivie,
        ]
        .into_iter()
        .find(|p| same_words(product, p.name()))
    }

    /// The name as customers know it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Product::Colissimo => "Colissimo",
            Product::Chronopost => "Chronopost",
            Product::LettreSuivie => "Lettre suivie",
        }
    }

    /// Suivi v2's `holder`: the network in charge (1 = Courrier, 3 = Chronopost, 4 = Colissimo).
    #[must_use]
    pub fn holder(self) -> u8 {
        match self {
            Product::Colissimo => 4,
            Product::Chronopost => 3,
            Product::LettreSuivie => 1,
        }
    }
}

/// A stored product as customers know it: `colissimo` → "Colissimo"; unknown products unchanged
/// (the caller escapes them like any data).
#[must_use]
pub fn product_name(product: &str) -> Cow<'_, str> {
    match Product::recognise(product) {
        Some(p) => Cow::Borrowed(p.name()),
        None => Cow::Borrowed(product),
    }
}

/// Whether two names are the same words: case-insensitive, `-`, `_` and space alike.
fn same_words(a: &str, b: &str) -> bool {
    let norm = |c: char| match c {
        '-' | '_' => ' ',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.chars().map(norm).eq(b.chars().map(norm))
}

/// The messages of Suivi v2 answers that carry no shipment, shown to customers as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnMessage {
    /// 104: a valid number with no event yet (La Poste's own French text, from its OpenAPI).
    NotYetAvailable,
    /// 400: not a tracking number (La Poste's own French text, from its OpenAPI).
    InvalidNumber,
    /// 504: the number could not be looked up right now.
    Unavailable,
}

impl ReturnMessage {
    #[must_use]
    pub fn text(self, lang: Lang) -> &'static str {
        let texts: [&'static str; 6] = match self {
            ReturnMessage::NotYetAvailable => [
                "Votre suivi n'est pas encore disponible. Si vous avez déposé votre envoi, les informations de suivi peuvent être affichées avec un délai, veuillez réessayer ultérieurement.",
                "Your tracking is not available yet. If you have dropped off your item, the tracking information may take a while to appear; please try again later.",
                "Ihre Sendungsverfolgung ist noch nicht verfügbar. Wenn Sie Ihre Sendung bereits aufgegeben haben, können die Informationen verzögert erscheinen; bitte versuchen Sie es später erneut.",
                "Su seguimiento aún no está disponible. Si ya ha depositado su envío, la información de seguimiento puede tardar en aparecer; vuelva a intentarlo más tarde.",
                "Il tracciamento non è ancora disponibile. Se ha già depositato la spedizione, le informazioni possono comparire con un certo ritardo; riprovi più tardi.",
                "Uw track & trace is nog niet beschikbaar. Als u uw zending al hebt afgegeven, kan het even duren voordat de informatie verschijnt; probeer het later opnieuw.",
            ],
            ReturnMessage::InvalidNumber => [
                "Le numéro que vous avez saisi n’est pas valide. Nous vous invitons à vérifier votre saisie, en particulier le nombre de caractères.",
                "The number you entered is not valid. Please check what you typed, in particular the number of characters.",
                "Die eingegebene Nummer ist ungültig. Bitte überprüfen Sie Ihre Eingabe, insbesondere die Anzahl der Zeichen.",
                "El número que ha introducido no es válido. Compruebe lo que ha escrito, en particular el número de caracteres.",
                "Il numero inserito non è valido. Verifichi quanto digitato, in particolare il numero di caratteri.",
                "Het ingevoerde nummer is ongeldig. Controleer uw invoer, in het bijzonder het aantal tekens.",
            ],
            ReturnMessage::Unavailable => [
                "Le suivi est momentanément indisponible. Veuillez réessayer dans quelques instants.",
                "Tracking is temporarily unavailable. Please try again in a few moments.",
                "Die Sendungsverfolgung ist vorübergehend nicht verfügbar. Bitte versuchen Sie es in wenigen Augenblicken erneut.",
                "El seguimiento no está disponible en este momento. Vuelva a intentarlo dentro de unos instantes.",
                "Il tracciamento è momentaneamente non disponibile. Riprovi tra qualche istante.",
                "Track & trace is tijdelijk niet beschikbaar. Probeer het over enkele ogenblikken opnieuw.",
            ],
        };
        texts[lang.index()]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_has_a_distinct_label_in_every_language() {
        for lang in Lang::ALL {
            let labels: HashSet<_> = EventCode::ALL
                .iter()
                .map(|&c| event_label(c, lang))
                .collect();
            assert_eq!(labels.len(), EventCode::ALL.len(), "{lang:?}");
            assert!(
                labels
                    .iter()
                    .all(|l| l.ends_with('.') && !l.trim().is_empty())
            );
        }
    }

    #[test]
    fn french_labels_are_la_postes() {
        // The wording La Poste's Suivi v2 API returns for these codes (docs/suivi-v2.md).
        assert_eq!(
            event_label(EventCode::Di1, Lang::Fr),
            "Votre colis est livré."
        );
        assert_eq!(
            event_label(EventCode::Et3, Lang::Fr),
            "Votre colis est arrivé dans le pays du destinataire."
        );
        assert_eq!(
            event_label(EventCode::Et1, Lang::Fr),
            "Votre colis est en transit sur nos plateformes logistiques."
        );
        assert_eq!(status_label(Status::Delivered, Lang::En), "Delivered");
    }

    #[test]
    fn every_status_and_message_is_written_in_every_language() {
        let statuses = [
            Status::InfoReceived,
            Status::InTransit,
            Status::OutForDelivery,
            Status::AttemptFailed,
            Status::AvailableForPickup,
            Status::Delivered,
            Status::Returned,
            Status::Exception,
        ];
        for lang in Lang::ALL {
            let names: HashSet<_> = statuses.iter().map(|&s| status_label(s, lang)).collect();
            assert_eq!(names.len(), statuses.len(), "{lang:?}");
            let messages: HashSet<_> = [
                ReturnMessage::NotYetAvailable,
                ReturnMessage::InvalidNumber,
                ReturnMessage::Unavailable,
            ]
            .iter()
            .map(|m| m.text(lang))
            .collect();
            assert_eq!(messages.len(), 3);
        }
        // Each language's texts differ from the others'.
        let french: HashSet<_> = EventCode::ALL
            .iter()
            .map(|&c| event_label(c, Lang::Fr))
            .collect();
        for lang in &Lang::ALL[1..] {
            assert!(
                EventCode::ALL
                    .iter()
                    .all(|&c| !french.contains(event_label(c, *lang)))
            );
        }
    }

    #[test]
    fn products_are_named_as_customers_know_them() {
        for (stored, shown) in [
            ("colissimo", "Colissimo"),
            ("COLISSIMO", "Colissimo"),
            ("chronopost", "Chronopost"),
            ("lettre-suivie", "Lettre suivie"),
            ("lettre_suivie", "Lettre suivie"),
            ("Lettre Suivie", "Lettre suivie"),
            ("international", "international"),
            ("<b>colis</b>", "<b>colis</b>"),
            ("colissimo ", "colissimo "),
            ("", ""),
        ] {
            assert_eq!(product_name(stored), shown, "{stored:?}");
        }
        assert_eq!(
            Product::recognise("chronopost").map(Product::holder),
            Some(3)
        );
        assert_eq!(
            Product::recognise("colissimo").map(Product::holder),
            Some(4)
        );
        assert_eq!(
            Product::recognise("lettre suivie").map(Product::holder),
            Some(1)
        );
        assert_eq!(Product::recognise("lettresuivie"), None);
    }
}
