use super::*;

fn started() -> Event {
    Event {
        type_: EventType::Normal,
        reason: "Started".into(),
        note: None,
        action: "Start".into(),
        secondary: None,
    }
}

#[tokio::test]
async fn the_queue_says_how_many_events_wait_to_be_published() {
    let (queue, mut pending) = EventQueue::new();
    assert_eq!(queue.depth(), 0);
    for _ in 0..3 {
        queue.audit(ObjectReference::default(), started()).await;
    }
    assert_eq!(queue.depth(), 3);
    assert!(pending.recv().await.is_some());
    assert_eq!(queue.depth(), 2, "one taken by the publisher");
}
