//! Policy types, parser, validator, compiler. Owned by the policy work.
