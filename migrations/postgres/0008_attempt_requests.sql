-- What each attempt sent: its headers as a JSON object, signatures included.
alter table delivery_attempts add column request_headers text;
