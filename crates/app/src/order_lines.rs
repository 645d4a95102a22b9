//! Which order lines were refunded, and by which ticket: invariant 5 spans tickets, so the
//! shell keeps this index and passes its answer to `decide` in the context.

use std::collections::HashMap;

use aftersales_ticket::{Event, OrderId, OrderLineId, Platform, TicketId};

type LineKey = (Platform, OrderId, OrderLineId);

/// Built by folding the global log; kept in memory (a few dozen bytes per ticket).
#[derive(Debug, Default, Clone)]
pub struct OrderLineIndex {
    line_of: HashMap<TicketId, LineKey>,
    refunded_by: HashMap<LineKey, TicketId>,
}

impl OrderLineIndex {
    /// Takes one event of `ticket` into account.
    pub fn apply(&mut self, ticket: &TicketId, event: &Event) {
        match event {
            Event::Opened(o) => {
                let key = (
                    o.platform.clone(),
                    o.order_id.clone(),
                    o.order_line_id.clone(),
                );
                self.line_of.insert(ticket.clone(), key);
            }
            Event::Refunded { .. } | Event::RefundedWithoutReturn { .. } => {
                if let Some(key) = self.line_of.get(ticket) {
                    self.refunded_by
                        .entry(key.clone())
                        .or_insert_with(|| ticket.clone());
                }
            }
            _ => {}
        }
    }

    /// The ticket that refunded this order line, if one did.
    pub fn refunded_by(
        &self,
        platform: &Platform,
        order: &OrderId,
        line: &OrderLineId,
    ) -> Option<&TicketId> {
        self.refunded_by
            .get(&(platform.clone(), order.clone(), line.clone()))
    }
}
