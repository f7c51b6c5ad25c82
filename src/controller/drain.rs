//! Watches read at the pace the API server sends them, not at the pace the controller takes
//! triggers.
//!
//! kube-runtime stops polling its trigger streams while every reconcile slot is busy, and the
//! back-pressure reaches the watch. Over HTTP/1.1 that stalls one watch's connection, and only
//! its cache goes stale. Over HTTP/2 every watch and every request share one connection and
//! its flow-control window: a watch left unread fills the window, the answers to the
//! reconciles in flight can no longer arrive, no slot frees, and the operator stops (seen at
//! 10,000 platforms). So each watch is read by a task of its own, which keeps its cache
//! current (the reflector and the taps run there) and hands what the controller needs to an
//! unbounded queue, as client-go's informers do. The queue holds only what the controller has
//! not yet taken; its triggers are coalesced per object downstream.

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

/// Whether the watch's items go on to the controller, or only their side effects count
/// (caches and taps) and the controller gets nothing from this stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    Items,
    Nothing,
}

/// Reads `stream` in a task of its own until it ends or the returned stream is dropped.
pub fn drained<S>(stream: S, forward: Forward) -> impl Stream<Item = S::Item> + Send + 'static
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(item) if forward == Forward::Items => {
                        if tx.send(item).is_err() {
                            return;
                        }
                    }
                    Some(_) => {}
                    None => return,
                },
                () = tx.closed() => return,
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn the_source_is_read_while_nobody_takes_its_items() {
        let read = Arc::new(AtomicUsize::new(0));
        let counted = read.clone();
        let source = futures::stream::iter(0..1000).inspect(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let mut out = Box::pin(drained(source, Forward::Items));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(read.load(Ordering::SeqCst), 1000, "read ahead of the taker");
        let taken: Vec<i32> = out.by_ref().collect().await;
        assert_eq!(
            taken,
            (0..1000).collect::<Vec<_>>(),
            "in order, nothing lost"
        );
    }

    #[tokio::test]
    async fn side_effects_only_forwards_nothing_and_a_dropped_taker_stops_the_reader() {
        let read = Arc::new(AtomicUsize::new(0));
        let counted = read.clone();
        let held = Arc::new(());
        let guard = held.clone();
        let source = futures::stream::iter(0..10)
            .chain(futures::stream::pending())
            .map(move |item| {
                let _ = &guard;
                counted.fetch_add(1, Ordering::SeqCst);
                item
            });
        let mut out = Box::pin(drained(source, Forward::Nothing));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(read.load(Ordering::SeqCst), 10, "read for its side effects");
        let next = tokio::time::timeout(Duration::from_millis(50), out.next()).await;
        assert!(next.is_err(), "nothing is forwarded");
        drop(out);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            Arc::strong_count(&held),
            1,
            "the reader ended with its taker"
        );
    }
}
