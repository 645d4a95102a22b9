//! Which order lines were refunded, and by which ticket: invariant 5 spans tickets, so the
//! shell keeps this index and passes its answer to `decide` in the context.

use std::collections::HashMap;

use aftersales_ticket::{Event, OrderId, OrderLineId, Platform, Ticket, TicketId};

type LineKey = (Platform, OrderId, OrderLineId);

/// Kept in memory: a few dozen bytes per refunded order line. Live, a refund's line comes
/// from its ticket's folded state; only the rebuild from the log ([`OrderLineRebuild`])
/// keeps every ticket's line, and drops it when done. (Keeping it live cost every opening
/// a map insert, about a tenth of the ingest workers' time, and grew by every ticket.)
#[derive(Debug, Default, Clone)]
pub struct OrderLineIndex {
    refunded_by: HashMap<LineKey, TicketId>,
}

impl OrderLineIndex {
    /// Takes one event into account; `ticket` is its ticket with the event applied.
    pub fn apply(&mut self, ticket: &Ticket, event: &Event) {
        if !Self::is_refund(event) {
            return;
        }
        if let Some(t) = ticket.data() {
            self.mark(
                (
                    t.platform.clone(),
                    t.order_id.clone(),
                    t.order_line_id.clone(),
                ),
                &t.id,
            );
        }
    }

    /// Whether `event` marks its ticket's line as refunded.
    pub fn is_refund(event: &Event) -> bool {
        matches!(
            event,
            Event::Refunded { .. } | Event::RefundedWithoutReturn { .. }
        )
    }

    fn mark(&mut self, line: LineKey, by: &TicketId) {
        self.refunded_by.entry(line).or_insert_with(|| by.clone());
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

/// Builds an [`OrderLineIndex`] from the global log, oldest first, without folding the
/// tickets: each ticket's line is taken from its opening.
#[derive(Debug, Default)]
pub struct OrderLineRebuild {
    line_of: HashMap<TicketId, LineKey>,
    index: OrderLineIndex,
}

impl OrderLineRebuild {
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
            e if OrderLineIndex::is_refund(e) => {
                if let Some(key) = self.line_of.get(ticket) {
                    self.index.mark(key.clone(), ticket);
                }
            }
            _ => {}
        }
    }

    pub fn finish(self) -> OrderLineIndex {
        self.index
    }
}
