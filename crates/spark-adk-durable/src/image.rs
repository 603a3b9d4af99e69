//! Replay: a run's log folded into the [`RunImage`] a resumed executor continues from.
//!
//! [`replay`] is pure: the same header, snapshot and records always give the same image, and a
//! record that does not fit the image so far (a consumed message that is not pending, a resume of
//! an interrupt that is not pending, a sequence number out of order) is an error naming the run
//! and the record, never skipped.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use spark_adk_core::NodeMessage;

use crate::error::DurableError;
use crate::record::{
    ActivationRecord, MessageId, Record, ResumeRecord, RoutedMessage, RunHeader, RunId, Snapshot,
    StateChange, StopRecord,
};

/// A message accepted but not yet processed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingMessage {
    /// The message's id (the id of the activation that will consume it).
    pub id: MessageId,
    /// The node that routed it; `None` for the task input and messages from outside.
    #[serde(deserialize_with = "Option::deserialize")]
    pub from: Option<String>,
    /// The node it is for.
    pub to: String,
    /// The message.
    pub message: NodeMessage,
}

/// A sink output: an activation's output that matched no outgoing edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SinkEntry {
    /// The activation that produced it.
    pub activation: MessageId,
    /// The node.
    pub node: String,
    /// The output.
    pub output: NodeMessage,
}

/// An interrupt waiting for its resume value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingInterrupt {
    /// The interrupted activation (its message stays pending).
    pub activation: MessageId,
    /// The node.
    pub node: String,
    /// What the node asked.
    pub payload: Value,
}

/// Everything a resumed run continues from: pending messages in log order, the state, counts,
/// tokens, sink outputs and pending interrupts.
///
/// Built by [`replay`] (or [`RunImage::new`] + [`RunImage::apply`]); serialisable, so a
/// [`Snapshot`] stores one.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "ImageData", into = "ImageData")]
pub struct RunImage {
    run_id: RunId,
    start: String,
    /// Pending messages keyed by acceptance order.
    pending: BTreeMap<u64, PendingMessage>,
    /// Message id -> acceptance order, for the pending ones.
    index: HashMap<MessageId, u64>,
    next_order: u64,
    next_message_id: u64,
    state: Map<String, Value>,
    tokens: u64,
    steps: u64,
    accepted: u64,
    processed: BTreeMap<String, u64>,
    sinks: Vec<SinkEntry>,
    interrupts: Vec<PendingInterrupt>,
    resume_values: BTreeMap<MessageId, Value>,
    stopped: Option<StopRecord>,
    last_seq: u64,
}

impl PartialEq for RunImage {
    /// Two images are equal when everything a resumed run sees is equal (pending messages compared
    /// in log order, not by internal bookkeeping).
    fn eq(&self, o: &Self) -> bool {
        self.run_id == o.run_id
            && self.start == o.start
            && self.pending.values().eq(o.pending.values())
            && self.next_message_id == o.next_message_id
            && self.state == o.state
            && self.tokens == o.tokens
            && self.steps == o.steps
            && self.accepted == o.accepted
            && self.processed == o.processed
            && self.sinks == o.sinks
            && self.interrupts == o.interrupts
            && self.resume_values == o.resume_values
            && self.stopped == o.stopped
            && self.last_seq == o.last_seq
    }
}

/// The serialised form of a [`RunImage`] (pending messages as a list in log order).
#[derive(Serialize, Deserialize)]
struct ImageData {
    run_id: RunId,
    start: String,
    pending: Vec<PendingMessage>,
    next_message_id: u64,
    state: Map<String, Value>,
    tokens: u64,
    steps: u64,
    accepted: u64,
    processed: BTreeMap<String, u64>,
    sinks: Vec<SinkEntry>,
    interrupts: Vec<PendingInterrupt>,
    resume_values: Vec<(MessageId, Value)>,
    stopped: Option<StopRecord>,
    last_seq: u64,
}

impl From<RunImage> for ImageData {
    fn from(i: RunImage) -> Self {
        Self {
            run_id: i.run_id,
            start: i.start,
            pending: i.pending.into_values().collect(),
            next_message_id: i.next_message_id,
            state: i.state,
            tokens: i.tokens,
            steps: i.steps,
            accepted: i.accepted,
            processed: i.processed,
            sinks: i.sinks,
            interrupts: i.interrupts,
            resume_values: i.resume_values.into_iter().collect(),
            stopped: i.stopped,
            last_seq: i.last_seq,
        }
    }
}

impl TryFrom<ImageData> for RunImage {
    type Error = String;

    fn try_from(d: ImageData) -> Result<Self, String> {
        let mut pending = BTreeMap::new();
        let mut index = HashMap::new();
        for (order, m) in (0u64..).zip(d.pending) {
            if index.insert(m.id, order).is_some() {
                return Err(format!("message {} is pending twice", m.id));
            }
            pending.insert(order, m);
        }
        let next_order = u64::try_from(pending.len()).map_err(|e| e.to_string())?;
        Ok(Self {
            run_id: d.run_id,
            start: d.start,
            pending,
            index,
            next_order,
            next_message_id: d.next_message_id,
            state: d.state,
            tokens: d.tokens,
            steps: d.steps,
            accepted: d.accepted,
            processed: d.processed,
            sinks: d.sinks,
            interrupts: d.interrupts,
            resume_values: d.resume_values.into_iter().collect(),
            stopped: d.stopped,
            last_seq: d.last_seq,
        })
    }
}

impl RunImage {
    /// The image of a run that has only its header: the task input pending for the start node,
    /// the initial state, all counts zero except one message accepted.
    pub fn new(header: &RunHeader) -> Self {
        let mut image = Self {
            run_id: header.run_id.clone(),
            start: header.fingerprint.shape.start.clone(),
            pending: BTreeMap::new(),
            index: HashMap::new(),
            next_order: 0,
            next_message_id: 0,
            state: header.initial_state.clone(),
            tokens: 0,
            steps: 0,
            accepted: 0,
            processed: BTreeMap::new(),
            sinks: Vec::new(),
            interrupts: Vec::new(),
            resume_values: BTreeMap::new(),
            stopped: None,
            last_seq: 0,
        };
        let to = image.start.clone();
        image.accept(MessageId::INPUT, None, to, header.inputs.clone());
        image
    }

    fn accept(&mut self, id: MessageId, from: Option<String>, to: String, message: NodeMessage) {
        let order = self.next_order;
        self.next_order += 1;
        self.index.insert(id, order);
        self.pending.insert(
            order,
            PendingMessage {
                id,
                from,
                to,
                message,
            },
        );
        self.accepted += 1;
        self.next_message_id = self.next_message_id.max(id.0.saturating_add(1));
    }

    fn check_fresh(&self, seq: u64, msgs: &[RoutedMessage]) -> Result<(), DurableError> {
        for (i, m) in msgs.iter().enumerate() {
            if self.index.contains_key(&m.id) || msgs[..i].iter().any(|o| o.id == m.id) {
                return Err(DurableError::corrupt(
                    &self.run_id,
                    seq,
                    format!("message {} is accepted twice", m.id),
                ));
            }
        }
        Ok(())
    }

    fn check_consumable(&self, seq: u64, id: MessageId, node: &str) -> Result<(), DurableError> {
        let Some(order) = self.index.get(&id) else {
            return Err(DurableError::corrupt(
                &self.run_id,
                seq,
                format!("activation {id} of `{node}` consumes a message that is not pending"),
            ));
        };
        let to = self.pending.get(order).map(|m| m.to.as_str());
        if to != Some(node) {
            return Err(DurableError::corrupt(
                &self.run_id,
                seq,
                format!(
                    "activation {id} ran `{node}` but its message is for `{}`",
                    to.unwrap_or("?")
                ),
            ));
        }
        Ok(())
    }

    /// Applies one record (sequence number `seq`, which must be the next one) to the image.
    ///
    /// On error the image is unchanged.
    pub fn apply(&mut self, seq: u64, record: &Record) -> Result<(), DurableError> {
        if seq != self.last_seq + 1 {
            return Err(DurableError::Truncated {
                run: self.run_id.clone(),
                seq: self.last_seq + 1,
                reason: format!("found record {seq} instead"),
            });
        }
        match record {
            Record::Activation(a) => self.apply_activation(seq, a)?,
            Record::Accepted(a) => {
                self.check_fresh(seq, std::slice::from_ref(&a.message))?;
                let m = a.message.clone();
                self.accept(m.id, None, m.target, m.message);
            }
            Record::Interrupt(i) => {
                self.check_consumable(seq, i.activation, &i.node)?;
                if self.interrupts.iter().any(|p| p.activation == i.activation) {
                    return Err(DurableError::corrupt(
                        &self.run_id,
                        seq,
                        format!("activation {} is interrupted twice", i.activation),
                    ));
                }
                self.resume_values.remove(&i.activation);
                self.tokens = self.tokens.saturating_add(i.tokens);
                self.interrupts.push(PendingInterrupt {
                    activation: i.activation,
                    node: i.node.clone(),
                    payload: i.payload.clone(),
                });
            }
            Record::Resume(r) => {
                if let Some(activation) = r.activation {
                    let Some(pos) = self
                        .interrupts
                        .iter()
                        .position(|p| p.activation == activation)
                    else {
                        return Err(DurableError::conflict(
                            &self.run_id,
                            seq,
                            format!(
                                "activation {activation} has no pending interrupt (already resumed, or never interrupted)"
                            ),
                        ));
                    };
                    self.interrupts.remove(pos);
                    self.resume_values
                        .insert(activation, r.value.clone().unwrap_or(Value::Null));
                }
                self.stopped = None;
            }
            Record::Stop(s) => self.stopped = Some(s.clone()),
        }
        self.last_seq = seq;
        Ok(())
    }

    fn apply_activation(&mut self, seq: u64, a: &ActivationRecord) -> Result<(), DurableError> {
        self.check_consumable(seq, a.activation, &a.node)?;
        if self.interrupts.iter().any(|p| p.activation == a.activation) {
            return Err(DurableError::corrupt(
                &self.run_id,
                seq,
                format!(
                    "activation {} committed while its interrupt was never resumed",
                    a.activation
                ),
            ));
        }
        self.check_fresh(seq, &a.routed)?;
        if a.routed.iter().any(|m| m.id == a.activation) {
            return Err(DurableError::corrupt(
                &self.run_id,
                seq,
                format!("activation {} routes its own message id", a.activation),
            ));
        }
        if let Some(order) = self.index.remove(&a.activation) {
            self.pending.remove(&order);
        }
        self.resume_values.remove(&a.activation);
        for m in &a.routed {
            self.accept(
                m.id,
                Some(a.node.clone()),
                m.target.clone(),
                m.message.clone(),
            );
        }
        if let Some(out) = &a.sink {
            self.sinks.push(SinkEntry {
                activation: a.activation,
                node: a.node.clone(),
                output: out.clone(),
            });
        }
        for change in &a.state {
            match change {
                StateChange::Set { key, value } => {
                    self.state.insert(key.clone(), value.clone());
                }
                StateChange::Removed { key } => {
                    self.state.remove(key);
                }
            }
        }
        self.tokens = self.tokens.saturating_add(a.tokens);
        self.steps += 1;
        *self.processed.entry(a.node.clone()).or_insert(0) += 1;
        Ok(())
    }

    /// The run.
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// The start node.
    pub fn start(&self) -> &str {
        &self.start
    }

    /// Accepted-not-processed messages in log order (for standard mode: the activation queue).
    /// Per sender->receiver pair this is send order.
    pub fn pending(&self) -> impl Iterator<Item = &PendingMessage> + '_ {
        self.pending.values()
    }

    /// The pending messages of one node (long-running mode: its mailbox), in log order.
    pub fn mailbox<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a PendingMessage> + 'a {
        self.pending.values().filter(move |m| m.to == node)
    }

    /// The number of pending messages.
    pub fn pending_count(&self) -> u64 {
        u64::try_from(self.pending.len()).unwrap_or(u64::MAX)
    }

    /// The id the next new message gets: above every id seen in the log.
    pub fn next_message_id(&self) -> MessageId {
        MessageId(self.next_message_id)
    }

    /// The graph state.
    pub fn state(&self) -> &Map<String, Value> {
        &self.state
    }

    /// Tokens recorded by committed activations and interrupts.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Committed activations (standard mode's step count).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Messages accepted so far (the task input included).
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Committed activations per node.
    pub fn processed(&self) -> &BTreeMap<String, u64> {
        &self.processed
    }

    /// Sink outputs in commit order.
    pub fn sinks(&self) -> &[SinkEntry] {
        &self.sinks
    }

    /// Interrupts waiting for a resume value.
    pub fn interrupts(&self) -> &[PendingInterrupt] {
        &self.interrupts
    }

    /// The resume value for an activation whose interrupt was answered and that has not run again
    /// yet (what `ctx.resume_value()` gives it).
    pub fn resume_value(&self, activation: MessageId) -> Option<&Value> {
        self.resume_values.get(&activation)
    }

    /// How the run last stopped, unless a resume came after.
    pub fn stopped(&self) -> Option<&StopRecord> {
        self.stopped.as_ref()
    }

    /// The sequence number of the last record applied (0: header only). A writer continuing this
    /// run appends with this as the expected head.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The record a resume with `value` appends: it answers the pending interrupt of
    /// `activation`, or with `None` the first pending interrupt in log order. A
    /// [`DurableError::Conflict`] when there is none to answer (it was already resumed, or the
    /// run was never interrupted). Appending the record with the image's [`RunImage::last_seq`]
    /// as the expected head fences out a second resumer that loaded the same image.
    pub fn answer_interrupt(
        &self,
        activation: Option<MessageId>,
        value: Value,
        owner: Option<String>,
    ) -> Result<Record, DurableError> {
        let pending = match activation {
            Some(a) => self.interrupts.iter().find(|p| p.activation == a),
            None => self.interrupts.first(),
        };
        let Some(pending) = pending else {
            return Err(DurableError::conflict(
                &self.run_id,
                self.last_seq + 1,
                match activation {
                    Some(a) => format!(
                        "activation {a} has no pending interrupt (already resumed, or never interrupted)"
                    ),
                    None => "the run has no pending interrupt (already resumed, or never interrupted)"
                        .to_owned(),
                },
            ));
        };
        Ok(Record::Resume(ResumeRecord {
            activation: Some(pending.activation),
            value: Some(value),
            owner,
        }))
    }

    /// `accepted == processed + unprocessed`, checked: the counts balance.
    pub fn counts_balance(&self) -> bool {
        self.accepted == self.steps + self.pending_count()
    }

    /// A snapshot of this image (covering every record applied so far).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: self.last_seq,
            image: self.clone(),
        }
    }
}

/// Replays a log: the header's image (or the snapshot's), then each record in order.
///
/// `records` are `(seq, record)` pairs; they must continue the snapshot (or the header) without
/// gaps. A snapshot of another run is refused.
pub fn replay(
    header: &RunHeader,
    snapshot: Option<&Snapshot>,
    records: &[(u64, Record)],
) -> Result<RunImage, DurableError> {
    let mut image = match snapshot {
        Some(s) => {
            if s.image.run_id != header.run_id || s.image.last_seq != s.at {
                return Err(DurableError::corrupt(
                    &header.run_id,
                    s.at,
                    format!(
                        "the snapshot is of run `{}` at record {}",
                        s.image.run_id, s.image.last_seq
                    ),
                ));
            }
            s.image.clone()
        }
        None => RunImage::new(header),
    };
    for (seq, record) in records {
        image.apply(*seq, record)?;
    }
    Ok(image)
}
