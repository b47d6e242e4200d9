"""Events: PostgreSQL LISTEN/NOTIFY bus and the fan-out to streaming RPCs."""

from server.events.bus import CHANNEL, Event, EventBus, SubscriberLagged, publish

__all__ = ["CHANNEL", "Event", "EventBus", "SubscriberLagged", "publish"]
