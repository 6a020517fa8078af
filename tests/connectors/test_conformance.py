"""Every built-in HTTP connector passes the conformance suite against its sandbox system."""

from crmhub.testing import sandbox_suite

TestStripe = sandbox_suite("stripe")
TestZendesk = sandbox_suite("zendesk")
TestMailchimp = sandbox_suite("mailchimp")
TestTypeform = sandbox_suite("typeform")
TestHubspot = sandbox_suite("hubspot")
