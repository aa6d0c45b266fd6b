-- What a tenant writes about a webhook, and the headers it adds to every attempt.
alter table webhooks
    add column description text,
    -- A JSON object of strings.
    add column metadata text not null default '{}',
    -- A JSON object of header names and values, sealed like the signing secret when a key is set.
    add column custom_headers text;
