//! idlink end to end: the real idlinkd, the development identity provider, the real client.
//! One test binary; each module reads as a sentence about the product.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod a_batch_job_imports_certifications;
mod a_crash_loses_no_acknowledged_link;
mod a_deleted_work_account_frees_its_links;
mod a_flow_cannot_be_hijacked_or_replayed;
mod a_move_names_nobody_at_the_new_employer;
mod a_person_sees_their_own_certifications;
mod a_redis_cluster_reshards_and_fails_over_losing_nothing;
mod a_redis_failover_loses_no_acknowledged_link;
mod associations_keep_partner_centers_limit;
mod callers_are_authenticated;
mod credit_follows_the_person;
mod every_hop_speaks_tls;
mod keys_survive_a_provider_outage;
mod links_have_a_lifecycle;
mod no_caller_runs_up_an_unbounded_cost;
mod no_secret_rests_in_the_store;
mod only_our_own_services_act_as_services;
mod operators_see_it_in_metrics;
mod organisations_list_their_links_in_sealed_pages;
mod people_use_the_panel_in_a_browser;
mod probes_never_restart_a_healthy_pod;
mod races_have_exactly_one_winner;
mod replicas_share_one_redis;
mod retries_are_idempotent;
mod secrets_never_reach_the_logs;
mod shutdown_finishes_what_it_started;
mod sign_in_floods_are_limited;
mod signing_keys_rotate_and_forged_tokens_fail;
mod the_change_feed_resumes_exactly;
mod the_load_generator_links_for_real;
mod the_skills_report_names_no_personal_data;
mod traces_continue_the_callers_trace;
mod unattended_jobs_ride_out_expiry_and_restarts;
mod who_may_do_what;
