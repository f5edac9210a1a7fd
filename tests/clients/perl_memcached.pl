#!/usr/bin/perl
# Perl's memcached clients: perl perl_memcached.pl PORT Cache::Memcached|Cache::Memcached::Fast|Cache::Memcached::libmemcached
# Runs the sweep's workload (tests/test_client_sweep.py) and prints one JSON object: step => result.
use strict;
use warnings;
use JSON::PP;

my ($port, $module) = @ARGV;
eval "require $module; 1" or die "cannot load $module: $@";
my $m = $module->new({ servers => ["127.0.0.1:$port"], compress_threshold => 10_000_000 });
my $big = "0123456789abcdef" x 62400;
my $utf8 = "gr\x{fc}\x{df}e, \x{6771}\x{4eac} \x{2713}";
utf8::encode($utf8);    # the bytes: these clients store byte strings
my $bin = join("", map { chr } 0 .. 255) . "\r\nEND\r\n\0";
my %t;
sub r { my ($name, $v) = @_; $t{$name} = defined $v ? "$v" : undef; }
sub b { my ($name, $v) = @_; $t{$name} = $v ? JSON::PP::true : JSON::PP::false; }
b(set => $m->set("k", "v"));
r(get => $m->get("k"));
r(get_missing => $m->get("absent"));
b(add_existing => $m->add("k", "w"));
b(add_new => $m->add("new", "w"));
b(replace => $m->replace("k", "w"));
b(replace_missing => $m->replace("absent", "w"));
if ($m->can("append")) {
    b(append => $m->append("k", "x"));
    b(prepend => $m->prepend("k", "<"));
}
if ($m->can("gets") && $module ne "Cache::Memcached") {
    my $got = $m->gets("k");
    $t{gets} = [$got->[1], $got->[0] ? JSON::PP::true : JSON::PP::false];
    b(cas_ok => $m->cas("k", $got->[0], "new"));
    b(cas_stale => $m->cas("k", $got->[0], "newer"));
}
$m->set("n", "10");
r(incr => $m->incr("n", 5));
r(decr => $m->decr("n", 3));
r(decr_below_zero => $m->decr("n", 100));
r(incr_missing => $m->incr("absent", 1));
r(incr_not_number => $m->incr("k", 1));
b(delete => $m->delete("k"));
b(delete_missing => $m->delete("k"));
$m->set("a", "1");
$m->set("b", "two");
my $multi = $m->get_multi("a", "b", "absent");
$t{get_multi} = { map { $_ => $multi->{$_} } sort keys %$multi };
b(touch => $m->touch("a", 1000)) if $m->can("touch");
b(big_set => $m->set("big", $big));
b(big_get => ($m->get("big") // "") eq $big);
b(too_big_set => $m->set("toobig", "x" x 1048576));
b(utf8_set => $m->set("utf8", $utf8));
b(utf8 => ($m->get("utf8") // "") eq $utf8);
b(binary_set => $m->set("bin", $bin));
b(binary => ($m->get("bin") // "") eq $bin);
b(expired_set => $m->set("old", "v", 2678401));
r(expired => $m->get("old"));
b(flush => $m->flush_all);
r(flushed => $m->get("a"));
if ($m->can("server_versions")) {
    my $v = $m->server_versions;
    $t{version} = (values %$v)[0];
} elsif ($m->can("stats")) {
    my $stats = $m->stats;
    $t{version} = $stats->{hosts}{"127.0.0.1:$port"}{misc}{version};
}
$m->disconnect_all if $m->can("disconnect_all");
print JSON::PP->new->canonical->encode(\%t), "\n";
