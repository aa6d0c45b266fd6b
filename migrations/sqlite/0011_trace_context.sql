-- The W3C traceparent of the request that published an event, when traces are exported, so
-- its delivery attempts (on any instance, however much later) continue that trace.
alter table events add column trace_context text;
