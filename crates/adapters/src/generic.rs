//! The generic JSON format, for any source that is not one of the five platforms (a
//! merchant's own shop, another marketplace's gateway). It is our own, documented in
//! docs/ADAPTERS.md: the command is written in the API's JSON form.
//!
//! ```json
//! {"message_id": "shop-42-1", "ticket_id": "myshop:42",
//!  "at": "2026-11-20T10:00:00+08:00", "actor": "customer",
//!  "command": {"type": "approve", "return_method": "customer_ships"}}
//! ```
//!
//! - `message_id` is the idempotency key (with the source's name in front);
//! - `ticket_id` must name the source: `<source>:<its own id>`, so one source cannot write
//!   into another's tickets; an `open` command must open that ticket on that source;
//! - `at` is RFC 3339 with an offset; `actor` is `customer`, `merchant` or `platform`.

use aftersales_ticket::{Actor, Command, Platform, TicketId};
use chrono::DateTime;
use serde::Deserialize;

use crate::flex;
use crate::{IfRefused, Message, Unusable};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericMessage {
    #[serde(deserialize_with = "flex::id")]
    message_id: String,
    ticket_id: TicketId,
    at: String,
    actor: Actor,
    command: Command,
}

pub(crate) fn translate(
    platform: &Platform,
    item: flex::Item<'_>,
) -> Result<Vec<Message>, Unusable> {
    let m: GenericMessage = flex::typed(item)?;
    let at = DateTime::parse_from_rfc3339(m.at.trim()).map_err(|e| Unusable::BadValue {
        field: "at",
        detail: format!("`{}` is not RFC 3339 with an offset: {e}", m.at),
    })?;
    let prefix = format!("{platform}:");
    if !m.ticket_id.as_str().starts_with(&prefix) {
        return Err(Unusable::BadValue {
            field: "ticket_id",
            detail: format!("`{}` does not start with `{prefix}`", m.ticket_id),
        });
    }
    if let Command::Open { ticket } = &m.command {
        if ticket.id != m.ticket_id || &ticket.platform != platform {
            return Err(Unusable::BadValue {
                field: "command.ticket",
                detail: format!(
                    "opens {} on {}, but the message is for {} from {platform}",
                    ticket.id, ticket.platform, m.ticket_id
                ),
            });
        }
    }
    let topic = m.command.name().to_owned();
    Ok(vec![Message {
        ticket_id: m.ticket_id,
        key: format!("{platform}/{}", m.message_id),
        at,
        actor: m.actor,
        command: m.command,
        topic,
        if_refused: IfRefused::DeadLetter,
    }])
}
