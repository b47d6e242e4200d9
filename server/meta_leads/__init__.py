"""Meta Lead Ads (PRD-08 section 2): OAuth connection, pages, form mappings and lead intake."""
