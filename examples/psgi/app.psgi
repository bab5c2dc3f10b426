# A PSGI application with only core Perl: `corral serve examples/psgi`
# (engine perl.psgi: plackup over HTTP on the port Corral gives it).
use strict;
use warnings;

my $app = sub {
    my $env = shift;
    my $body = '';
    if (my $input = $env->{'psgi.input'}) {
        while ($input->read(my $chunk, 65536)) { $body .= $chunk; }
    }
    if ($env->{PATH_INFO} eq '/env.txt') {
        my @keys = qw(REQUEST_METHOD SCRIPT_NAME PATH_INFO QUERY_STRING SERVER_NAME HTTP_HOST
                      HTTP_X_FORWARDED_FOR);
        my $text = join '', map { "$_=" . ($env->{$_} // '') . "\n" } @keys;
        $text .= "PLACK_ENV=" . ($ENV{PLACK_ENV} // '') . "\n";
        $text .= "body_bytes=" . length($body) . "\n";
        $text .= "pid=$$\n";
        return [200, ['Content-Type' => 'text/plain'], [$text]];
    }
    return [200, ['Content-Type' => 'text/plain'], ["Hello from PSGI on Perl $^V\n"]];
};
