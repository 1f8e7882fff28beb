//! The event bus behind `GET /events`: a bounded history for `since` and a broadcast for
//! live subscribers.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bollard_stubs::models::{EventActor, EventMessage, EventMessageTypeEnum};
use tokio::sync::broadcast;

const HISTORY: usize = 1024;

pub struct Events {
    history: Mutex<VecDeque<EventMessage>>,
    live: broadcast::Sender<EventMessage>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            history: Mutex::new(VecDeque::new()),
            live: broadcast::channel(256).0,
        }
    }
}

impl Events {
    pub fn container(&self, action: &str, id: &str, attributes: HashMap<String, String>) {
        self.publish(EventMessageTypeEnum::CONTAINER, action, id, attributes);
    }

    pub fn image(&self, action: &str, id: &str, name: &str) {
        let attributes = HashMap::from([("name".to_string(), name.to_string())]);
        self.publish(EventMessageTypeEnum::IMAGE, action, id, attributes);
    }

    pub fn network(&self, action: &str, id: &str, name: &str) {
        let attributes = HashMap::from([
            ("name".to_string(), name.to_string()),
            ("type".to_string(), "bridge".to_string()),
        ]);
        self.publish(EventMessageTypeEnum::NETWORK, action, id, attributes);
    }

    pub fn volume(&self, action: &str, name: &str) {
        let attributes = HashMap::from([("driver".to_string(), "local".to_string())]);
        self.publish(EventMessageTypeEnum::VOLUME, action, name, attributes);
    }

    fn publish(
        &self,
        typ: EventMessageTypeEnum,
        action: &str,
        id: &str,
        attributes: HashMap<String, String>,
    ) {
        let now = chrono::Utc::now();
        let msg = EventMessage {
            typ: Some(typ),
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some(id.to_string()),
                attributes: Some(attributes),
            }),
            scope: Some(bollard_stubs::models::EventMessageScopeEnum::LOCAL),
            time: Some(now.timestamp()),
            time_nano: now.timestamp_nanos_opt(),
        };
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(msg.clone());
        // No subscribers is fine.
        let _ = self.live.send(msg);
    }

    /// Past events (for `since`) and a receiver for what comes next, taken under one lock so
    /// nothing falls between them.
    pub fn subscribe(&self) -> (Vec<EventMessage>, broadcast::Receiver<EventMessage>) {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        (history.iter().cloned().collect(), self.live.subscribe())
    }
}
